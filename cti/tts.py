"""Text-to-speech and audio uploads for announcements, in the format Asterisk plays.

Every file this module writes is 8 kHz, mono, 16-bit signed PCM in a ``.wav`` container:
what Asterisk plays as ``.wav`` without transcoding on a narrowband call.

Safety rules that hold for every engine:

* External programs run with ``asyncio.create_subprocess_exec`` and an argument list,
  never through a shell; text reaches the synthesiser on stdin, so quotes, ``;``,
  ``$(...)`` or a leading ``-`` in an announcement are spoken, not executed or parsed as
  options. File names are made absolute so they can never be read as options either.
* Every run has a timeout; on timeout the whole process group is killed.
* Output is written to a temporary file in the target's directory and moved into place
  with ``os.replace``: a failed synthesis or upload leaves the previous audio playing.

Adding an engine (for example Piper, a neural TTS with good Dutch voices): write a class
with the same ``synthesize`` coroutine that runs ``piper --model <nl_NL-...onnx>
--output_file <tmp.wav>`` with the text on stdin through ``_run``, then calls
``_to_asterisk_wav`` and ``_replace`` exactly as ``EspeakEngine`` does (Piper writes
22.05 kHz audio, so the sox step is the same), and register it in ``_ENGINES`` under
"piper". The model path would come from the constructor, and so from the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import tempfile
import wave
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from dialplan.config import Tts

__all__ = [
    "EspeakEngine",
    "TtsEngine",
    "TtsError",
    "convert_upload",
    "engine_from_name",
]

SAMPLE_RATE = 8000
DEFAULT_TIMEOUT = 20.0
DEFAULT_MAX_CHARS = 2000
# Our language codes to espeak-ng voice names.
ESPEAK_VOICES: Mapping[str, str] = {"nl": "nl", "en": "en-gb"}
# The sox argument that turns any input into what Asterisk wants.
_ASTERISK_FORMAT = ("-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer")


class TtsError(Exception):
    """Synthesis or conversion failed; the message is fit to show an operator."""


class _ProgramFailed(TtsError):
    """The program ran and exited non-zero: for sox on an upload, bad input."""


class TtsEngine(Protocol):
    async def synthesize(self, text: str, out_wav: Path, language: str = "nl") -> None:
        """Speak ``text`` into ``out_wav`` (8 kHz mono 16-bit), replacing it atomically."""
        ...


async def _run(
    argv: Sequence[str], *, what: str, limit: float, stdin: bytes | None = None
) -> bytes:
    """Run ``argv`` without a shell; return stderr, raise TtsError on any failure."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Its own process group, so a timeout also kills anything a wrapper started.
            start_new_session=True,
        )
    except FileNotFoundError:
        raise TtsError(f"{what} not installed (no {argv[0]!r} found)") from None
    except PermissionError:
        raise TtsError(f"{what} cannot be started (permission denied on {argv[0]!r})") from None
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(stdin), limit)
    except TimeoutError:
        raise TtsError(f"{what} timed out after {limit:g} s") from None
    finally:
        # Also reached on cancellation: never leave a synthesiser running behind us.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if proc.returncode != 0:
        detail = _last_line(stderr) or f"exit code {proc.returncode}"
        raise _ProgramFailed(f"{what} failed: {detail}")
    return stderr


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    return next((line for line in reversed(lines) if line), "")


def _temp_path(out_wav: Path, tag: str) -> Path:
    # In the target's directory, so os.replace is an atomic rename on one filesystem;
    # hidden, so an operator listing the sounds never sees half-written files.
    fd, name = tempfile.mkstemp(dir=out_wav.parent, prefix=f".{out_wav.stem}.{tag}.", suffix=".wav")
    os.close(fd)
    return Path(name)


async def _to_asterisk_wav(
    src: Path, dst: Path, *, sox: str, limit: float, what: str, src_type: str | None = None
) -> None:
    type_args = ("-t", src_type) if src_type else ()
    await _run(
        [sox, "-V1", *type_args, str(src), *_ASTERISK_FORMAT, "-t", "wav", str(dst)],
        what=what,
        limit=limit,
    )


def _audio_seconds(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / w.getframerate()
    except (wave.Error, EOFError, OSError) as exc:
        raise TtsError(f"converted audio is unreadable: {exc}") from None


def _replace(tmp: Path, out_wav: Path) -> None:
    # Asterisk must read it: `bereik up` runs it as bereik's own user; where it runs as
    # another, a shared group reads (0640). Never others: prompts speak callers' numbers.
    os.chmod(tmp, 0o640)
    os.replace(tmp, out_wav)


def _unlink(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _prepare_target(out_wav: Path) -> Path:
    out_wav = Path(out_wav).absolute()
    if not out_wav.parent.is_dir():
        raise TtsError(f"output directory {out_wav.parent} does not exist")
    return out_wav


class EspeakEngine:
    """espeak-ng, resampled by sox: robotic but always available and instant."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_chars: int = DEFAULT_MAX_CHARS,
        voices: Mapping[str, str] = ESPEAK_VOICES,
        speed: int | None = None,
        espeak: str = "espeak-ng",
        sox: str = "sox",
    ) -> None:
        self.timeout = timeout
        self.max_chars = max_chars
        self.voices = dict(voices)
        self.speed = speed
        self.espeak = espeak
        self.sox = sox

    def _check_text(self, text: str) -> str:
        text = text.strip()
        if not text:
            raise TtsError("nothing to say: the text is empty")
        if len(text) > self.max_chars:
            raise TtsError(
                f"text too long: {len(text)} characters, at most {self.max_chars} allowed"
            )
        return text

    def _voice(self, language: str) -> str:
        voice = self.voices.get(language.lower())
        if voice is None:
            known = ", ".join(sorted(self.voices))
            raise TtsError(f"no voice for language {language!r} (known: {known})")
        return voice

    async def synthesize(self, text: str, out_wav: Path, language: str = "nl") -> None:
        text = self._check_text(text)
        voice = self._voice(language)
        out_wav = _prepare_target(out_wav)
        raw: Path | None = None
        converted: Path | None = None
        try:
            raw = _temp_path(out_wav, "espeak")
            converted = _temp_path(out_wav, "sox")
            # -b 1: the text on stdin is UTF-8 ("één", "café"), whatever the locale says.
            argv = [self.espeak, "-v", voice, "-b", "1", "-w", str(raw)]
            if self.speed is not None:
                argv += ["-s", str(self.speed)]
            argv.append("--stdin")
            await _run(argv, what="espeak-ng", limit=self.timeout, stdin=text.encode("utf-8"))
            await _to_asterisk_wav(raw, converted, sox=self.sox, limit=self.timeout, what="sox")
            if _audio_seconds(converted) <= 0:
                raise TtsError("espeak-ng produced no audio for this text")
            _replace(converted, out_wav)
            converted = None
        finally:
            _unlink(raw, converted)


# Leading bytes of the upload formats we accept, so the type comes from the content and
# not from a name the uploader chose (an mp3 called "bericht.wav" still converts).
def _sniff(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def _identify_upload(src: Path) -> tuple[Path, str | None]:
    src = Path(src).absolute()
    try:
        with src.open("rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise TtsError(f"cannot read the upload: {exc.strerror or exc}") from None
    return src, _sniff(head)


async def convert_upload(
    src: Path,
    out_wav: Path,
    *,
    time_limit: float = 60.0,
    max_seconds: float = 600.0,
    sox: str = "sox",
) -> None:
    """Convert an uploaded wav, mp3 or ogg file to ``out_wav``, replacing it atomically.

    The format is taken from the file's content, not its name. Anything that is not
    audio sox can decode is refused with ``TtsError("not an audio file ...")``; so is
    audio longer than ``max_seconds``.
    """
    src, kind = _identify_upload(src)
    out_wav = _prepare_target(out_wav)
    if kind is None:
        raise TtsError("not an audio file (expected wav, mp3 or ogg)")
    converted: Path | None = None
    try:
        converted = _temp_path(out_wav, "upload")
        try:
            await _to_asterisk_wav(
                src, converted, sox=sox, limit=time_limit, what="sox", src_type=kind
            )
        except _ProgramFailed as exc:
            raise TtsError(f"not an audio file, or a damaged {kind} file ({exc})") from None
        seconds = _audio_seconds(converted)
        if seconds <= 0:
            raise TtsError("not an audio file: it contains no sound")
        if seconds > max_seconds:
            raise TtsError(f"recording too long: {seconds:.0f} s, at most {max_seconds:g} s")
        _replace(converted, out_wav)
        converted = None
    finally:
        _unlink(converted)


_ENGINES: dict[str, Callable[..., TtsEngine]] = {
    "espeak": EspeakEngine,
    "espeak-ng": EspeakEngine,
}

_NAME = re.compile(r"^[a-z0-9-]*$")


def engine_for(settings: Tts) -> TtsEngine:
    """The engine the configuration's [tts] names, with its options."""
    options: dict[str, object] = {
        "timeout": settings.timeout_seconds,
        "max_chars": settings.max_chars,
    }
    if settings.speed is not None:
        options["speed"] = settings.speed
    return engine_from_name(settings.engine, **options)


def engine_from_name(name: str = "espeak", **options: object) -> TtsEngine:
    """The engine called ``name`` ("espeak" when empty), built with ``options``."""
    key = (name or "espeak").strip().lower()
    factory = _ENGINES.get(key) if _NAME.match(key) else None
    if factory is None:
        raise TtsError(f"unknown TTS engine {name!r} (known: {', '.join(sorted(_ENGINES))})")
    return factory(**options)
