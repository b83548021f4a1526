from __future__ import annotations

import os
import subprocess
import time
import wave
from pathlib import Path

import pytest

from cti.tts import (
    EspeakEngine,
    TtsEngine,
    TtsError,
    convert_upload,
    engine_from_name,
)
from tests.tools import require_tool

for tool, package in (("espeak-ng", "espeak-ng"), ("sox", "sox"), ("soxi", "sox")):
    require_tool(tool, package)


def wav_format(path: Path) -> tuple[int, int, int, int]:
    """(rate, channels, sample width in bytes, frames)."""
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


def assert_asterisk_wav(path: Path) -> None:
    rate, channels, width, frames = wav_format(path)
    assert (rate, channels, width) == (8000, 1, 2)
    assert frames > 0
    # soxi agrees: signed 16-bit PCM.
    soxi = subprocess.run(["soxi", str(path)], capture_output=True, text=True, check=True)
    assert "16-bit Signed Integer PCM" in soxi.stdout


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def no_temp_files(directory: Path) -> bool:
    return not [name for name in listing(directory) if name.startswith(".")]


def exists(path: Path) -> bool:
    return path.exists()


async def test_espeak_makes_8khz_mono_wav(tmp_path: Path) -> None:
    out = tmp_path / "news.wav"
    await EspeakEngine().synthesize("Wegens een storing zijn wij slecht bereikbaar.", out, "nl")
    assert_asterisk_wav(out)
    assert no_temp_files(tmp_path)
    # Asterisk reads it (owner or a shared group); other users never: numbers are spoken.
    assert out.stat().st_mode & 0o777 == 0o640


async def test_english_and_non_ascii(tmp_path: Path) -> None:
    out = tmp_path / "en.wav"
    await EspeakEngine().synthesize("We are closed on King's Day.", out, "en")
    assert_asterisk_wav(out)
    await EspeakEngine().synthesize("Één café, ë en ü.", out, "nl")
    assert_asterisk_wav(out)


async def test_text_is_spoken_not_executed(tmp_path: Path) -> None:
    markers = [tmp_path / f"marker{i}" for i in range(4)]
    text = (
        f"Let op\"; touch {markers[0]}; echo '\n"
        f"$(touch {markers[1]})\n"
        f"`touch {markers[2]}` && touch {markers[3]} | cat\n"
        "--help -w /tmp/evil.wav $(rm -rf /)"
    )
    out = tmp_path / "odd.wav"
    await EspeakEngine().synthesize(text, out, "nl")
    assert_asterisk_wav(out)
    assert not any(exists(marker) for marker in markers)
    assert not exists(Path("/tmp/evil.wav"))
    # All lines were spoken, not just the first: several seconds of audio.
    rate, _, _, frames = wav_format(out)
    assert frames / rate > 5


async def test_text_starting_with_dash_is_spoken(tmp_path: Path) -> None:
    out = tmp_path / "dash.wav"
    await EspeakEngine().synthesize("-v en --version", out, "nl")
    assert_asterisk_wav(out)


async def test_too_long_text_refused(tmp_path: Path) -> None:
    out = tmp_path / "long.wav"
    with pytest.raises(TtsError, match=r"text too long: 2001 characters, at most 2000"):
        await EspeakEngine().synthesize("a" * 2001, out, "nl")
    assert not out.exists()
    with pytest.raises(TtsError, match="too long"):
        await EspeakEngine(max_chars=10).synthesize("elf tekens!", out, "nl")


async def test_empty_text_and_unknown_language_refused(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match="empty"):
        await EspeakEngine().synthesize("  \n ", tmp_path / "x.wav", "nl")
    with pytest.raises(TtsError, match="no voice for language"):
        await EspeakEngine().synthesize("hallo", tmp_path / "x.wav", "-w /etc/passwd")


async def test_timeout_with_real_espeak(tmp_path: Path) -> None:
    out = tmp_path / "slow.wav"
    with pytest.raises(TtsError, match=r"timed out after 0.001 s"):
        await EspeakEngine(timeout=0.001).synthesize("Een lange zin. " * 50, out, "nl")
    assert not out.exists()
    assert no_temp_files(tmp_path)


async def test_timeout_kills_the_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hanging = tmp_path / "fake-espeak"
    hanging.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    hanging.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(TtsError, match=r"espeak-ng timed out after 0\.5 s"):
        await EspeakEngine(timeout=0.5, espeak=str(hanging)).synthesize("hallo", tmp_path / "o.wav")
    assert time.monotonic() - started < 5
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_previous_audio_kept_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "closure.wav"
    await EspeakEngine().synthesize("Wij zijn vandaag gesloten.", out, "nl")
    before = out.read_bytes()

    failing = tmp_path / "failing-espeak"
    failing.write_text("#!/bin/sh\necho 'voice data missing' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(TtsError, match="espeak-ng failed: voice data missing"):
        await EspeakEngine(espeak=str(failing)).synthesize("Nieuwe tekst.", out, "nl")
    with pytest.raises(TtsError, match="timed out"):
        await EspeakEngine(timeout=0.001).synthesize("Nieuwe tekst.", out, "nl")
    with pytest.raises(TtsError, match="too long"):
        await EspeakEngine().synthesize("x" * 5000, out, "nl")
    with pytest.raises(TtsError, match="not an audio file"):
        junk = tmp_path / "junk.wav"
        junk.write_text("not audio")
        await convert_upload(junk, out)

    assert out.read_bytes() == before
    assert listing(tmp_path) == [
        "closure.wav",
        "failing-espeak",
        "junk.wav",
    ]


async def test_missing_program_reported(tmp_path: Path) -> None:
    engine = EspeakEngine(espeak="/nonexistent/espeak-ng")
    with pytest.raises(TtsError, match="espeak-ng not installed"):
        await engine.synthesize("hallo", tmp_path / "x.wav", "nl")
    assert no_temp_files(tmp_path)


async def test_missing_output_directory(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match="does not exist"):
        await EspeakEngine().synthesize("hallo", tmp_path / "nope" / "x.wav", "nl")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"Dit is geen geluid.\n"),
        ("fake.mp3", b"ID3" + b"\x00" * 200),  # mp3 header, then nothing sox can decode
        ("fake.wav", b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk"),
        ("script.ogg", b"#!/bin/sh\nrm -rf /\n"),
        ("empty.wav", b""),
    ],
)
async def test_non_audio_upload_refused(tmp_path: Path, name: str, content: bytes) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    out = tmp_path / "upload.wav"
    with pytest.raises(TtsError, match="not an audio file"):
        await convert_upload(src, out)
    assert not out.exists()
    assert no_temp_files(tmp_path)


async def test_missing_upload(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match="cannot read the upload"):
        await convert_upload(tmp_path / "gone.mp3", tmp_path / "out.wav")


def make_source(tmp_path: Path, name: str) -> Path:
    """A 44.1 kHz stereo tone in the format the name says, made by sox."""
    src = tmp_path / name
    subprocess.run(
        ["sox", "-n", "-r", "44100", "-c", "2", str(src), "synth", "1.5", "sine", "440"],
        check=True,
        capture_output=True,
    )
    return src


def sox_writes(kind: str) -> bool:
    out = subprocess.run(["sox", "-h"], capture_output=True, text=True).stdout
    formats = next(line for line in out.splitlines() if line.startswith("AUDIO FILE FORMATS"))
    return kind in formats.split()


@pytest.mark.parametrize("name", ["upload.mp3", "upload.ogg", "upload.wav"])
async def test_upload_converted(tmp_path: Path, name: str) -> None:
    kind = name.rsplit(".", 1)[1]
    assert sox_writes(kind), f"sox cannot write {kind}: scripts/install-deps installs the formats"
    src = make_source(tmp_path, name)
    out = tmp_path / "out.wav"
    await convert_upload(src, out)
    assert_asterisk_wav(out)
    rate, _, _, frames = wav_format(out)
    assert 1.3 < frames / rate < 1.7


async def test_upload_type_from_content_not_name(tmp_path: Path) -> None:
    assert sox_writes("mp3"), "sox cannot write mp3: install libsox-fmt-mp3 (scripts/install-deps)"
    mp3 = make_source(tmp_path, "real.mp3")
    disguised = tmp_path / "bericht.wav"
    mp3.rename(disguised)
    out = tmp_path / "out.wav"
    await convert_upload(disguised, out)
    assert_asterisk_wav(out)


async def test_upload_too_long_refused(tmp_path: Path) -> None:
    src = make_source(tmp_path, "long.wav")
    out = tmp_path / "out.wav"
    with pytest.raises(TtsError, match="recording too long"):
        await convert_upload(src, out, max_seconds=1)
    assert not out.exists()


def test_engine_from_name() -> None:
    assert isinstance(engine_from_name("espeak"), EspeakEngine)
    assert isinstance(engine_from_name(""), EspeakEngine)
    engine: TtsEngine = engine_from_name("espeak-ng", timeout=5.0)
    assert isinstance(engine, EspeakEngine) and engine.timeout == 5.0
    with pytest.raises(TtsError, match="unknown TTS engine 'piper'"):
        engine_from_name("piper")
