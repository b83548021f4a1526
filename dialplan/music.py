"""Music for callers in the waiting line, made by sox: soft chords, no licence to check.

Made once per instance at render time (Asterisk's music-on-hold reads the directory when
it loads), 8 kHz mono like every prompt, so Asterisk never transcodes it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# A slow I-vi-IV-V progression (Hz), each chord two seconds.
CHORDS = (
    (261.63, 329.63, 392.00),
    (220.00, 261.63, 329.63),
    (174.61, 220.00, 261.63),
    (196.00, 246.94, 293.66),
)
FILE_NAME = "bereik-chords.wav"


def make_music(directory: Path) -> Path:
    """The music file in `directory`, made if it is not there yet."""
    target = directory / FILE_NAME
    if target.exists():
        return target
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeError("sox is needed to make the waiting-line music (apt-get install sox)")
    directory.mkdir(parents=True, exist_ok=True)
    parts = []
    for index, chord in enumerate(CHORDS):
        part = directory / f".chord{index}.wav"
        tones = [arg for hz in chord for arg in ("sine", f"{hz}")]
        subprocess.run(
            [
                sox,
                "-n",
                "-r",
                "8000",
                "-c",
                "1",
                "-b",
                "16",
                str(part),
                "synth",
                "2",
                *tones,
                "fade",
                "q",
                "0.3",
                "2",
                "0.5",
                "gain",
                "-18",
            ],
            check=True,
            capture_output=True,
        )
        parts.append(str(part))
    partial = directory / f".{FILE_NAME}"
    subprocess.run([sox, *parts, str(partial), "repeat", "3"], check=True, capture_output=True)
    partial.rename(target)
    for name in parts:
        Path(name).unlink()
    return target
