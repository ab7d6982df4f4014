"""A corpus of real recordings from Debian packages, in every format people's collections hold.

    python scripts/real_audio_corpus.py OUT [--cache DIR]

The packages (games, education, sound themes, sample libraries) are fetched with `apt-get download` and
unpacked with `dpkg-deb -x` (nothing is installed), once, into the cache (default
$CLAP_AUDIO_CACHE or ~/.cache/clap_train/debian-audio). OUT gets, one folder per package (a class):

- the recordings exactly as the packages ship them (wav, ogg, oga, flac, aiff, mp3: 8-96 kHz, mono and
  stereo, 8/16/24-bit, from 0.02 s to minutes; some misnamed or undecodable, as shipped);
- re-encodings of some of them the ways files reach users: MP3 from LAME (CBR and VBR, with and without
  the Xing/Info frame, ID3v2 with padding, ID3v1, MPEG-2 and 2.5 rates), Opus, Vorbis, 24-bit FLAC,
  8-bit/24-bit/float WAV, AIFF, AU, CAF, W64, at other rates and channel counts (ffmpeg);
- LICENCES/<package>.copyright (each package's Debian copyright file) and manifest.json (every file:
  package, version, source path, how it was made, licence file).

Needs apt-get, dpkg-deb, ffmpeg and lame (scripts/install_audio_tools_debian.sh installs the last two).
The files keep their packages' licences (LICENCES/); the corpus is for testing and is not redistributed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

# package -> most originals taken (in sorted path order; None: all)
PACKAGES = {
    "sound-theme-freedesktop": None,  # oga (Vorbis), 8-96 kHz
    "alsa-utils": None,  # 48 kHz mono wav
    "sound-icons": None,  # 16 kHz wav
    "kbounce": None,  # 8 kHz wav
    "pingus-data": None,  # 11 kHz / 44.1 kHz wav
    "tuxpaint-data": None,  # 11-44.1 kHz wav
    "tuxtype-data": None,  # wav and ogg music
    "kanagram": None,
    "frozen-bubble-data": None,  # ogg music, minutes long
    "lmms-common": 60,  # flac, ogg (some are WAV inside), wav; 22-96 kHz
    "sonic-pi-samples": 40,  # flac samples
    "puredata-doc": None,  # aiff
    "supercollider-common": None,  # aiff
    "renpy": None,
    "libmp3-tag-perl": None,  # two MP3s as found in the wild
    "klettres-data": 30,  # spoken letters, ogg, up to 128 kHz
}
AUDIO_EXTS = ("wav", "ogg", "oga", "flac", "aiff", "aif", "mp3", "opus", "au")

# (name, extension, command after the input; {out} is the output path): one per re-encoded file, in turn
VARIANTS = [
    ("lame-cbr128", "mp3", ["lame", "--quiet", "-b", "128", "{in}", "{out}"]),
    ("lame-cbr-notag", "mp3", ["lame", "--quiet", "-t", "-b", "96", "{in}", "{out}"]),
    ("lame-vbr2", "mp3", ["lame", "--quiet", "-V", "2", "{in}", "{out}"]),
    ("lame-vbr5-notag", "mp3", ["lame", "--quiet", "-t", "-V", "5", "{in}", "{out}"]),
    ("lame-abr", "mp3", ["lame", "--quiet", "--abr", "112", "{in}", "{out}"]),
    (
        "lame-id3pad",
        "mp3",
        ["lame", "--quiet", "-V", "4", "--id3v2-only", "--pad-id3v2-size", "40000", "--tt", "a title", "{in}", "{out}"],
    ),
    (
        "lame-id3pad-notag",
        "mp3",
        ["lame", "--quiet", "-t", "-V", "3", "--id3v2-only", "--pad-id3v2-size", "20000", "{in}", "{out}"],
    ),
    ("lame-id3v1", "mp3", ["lame", "--quiet", "-b", "64", "--id3v1-only", "--ta", "an artist", "{in}", "{out}"]),
    ("lame-mpeg2-22k-mono", "mp3", ["lame", "--quiet", "-m", "m", "--resample", "22.05", "-V", "6", "{in}", "{out}"]),
    ("lame-mpeg25-8k", "mp3", ["lame", "--quiet", "-m", "m", "--resample", "8", "-b", "16", "{in}", "{out}"]),
    ("opus", "opus", ["ffmpeg", "-i", "{in}", "-c:a", "libopus", "-b:a", "64k", "{out}"]),
    ("opus-mono-24k", "opus", ["ffmpeg", "-i", "{in}", "-ac", "1", "-ar", "24000", "-c:a", "libopus", "{out}"]),
    ("vorbis", "ogg", ["ffmpeg", "-i", "{in}", "-c:a", "libvorbis", "-q:a", "3", "{out}"]),
    ("flac24-96k", "flac", ["ffmpeg", "-i", "{in}", "-ar", "96000", "-sample_fmt", "s32", "-c:a", "flac", "{out}"]),
    ("wav-u8-8k", "wav", ["ffmpeg", "-i", "{in}", "-ar", "8000", "-c:a", "pcm_u8", "{out}"]),
    ("wav-s24", "wav", ["ffmpeg", "-i", "{in}", "-c:a", "pcm_s24le", "{out}"]),
    ("wav-f32-stereo", "wav", ["ffmpeg", "-i", "{in}", "-ac", "2", "-c:a", "pcm_f32le", "{out}"]),
    ("wav-f64-32k", "wav", ["ffmpeg", "-i", "{in}", "-ar", "32000", "-c:a", "pcm_f64le", "{out}"]),
    ("aiff", "aiff", ["ffmpeg", "-i", "{in}", "-c:a", "pcm_s16be", "{out}"]),
    ("au", "au", ["ffmpeg", "-i", "{in}", "-c:a", "pcm_s16be", "{out}"]),
    ("caf", "caf", ["ffmpeg", "-i", "{in}", "-c:a", "pcm_s16le", "{out}"]),
    ("w64", "w64", ["ffmpeg", "-i", "{in}", "-c:a", "pcm_s16le", "{out}"]),
    ("wav-6ch", "wav", ["ffmpeg", "-i", "{in}", "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0", "{out}"]),
]
REENCODED_PER_PACKAGE = 6  # originals per package re-encoded (each into the next variants in turn)


def default_cache() -> str:
    return os.environ.get("CLAP_AUDIO_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "clap_train", "debian-audio"
    )


def fetch(cache: str, log=print) -> dict[str, dict]:
    """Each package downloaded and unpacked once: {package: {"root", "version", "copyright"}}."""
    debs, unpacked = os.path.join(cache, "debs"), os.path.join(cache, "x")
    os.makedirs(debs, exist_ok=True)
    os.makedirs(unpacked, exist_ok=True)
    have = {f.split("_")[0]: f for f in os.listdir(debs) if f.endswith(".deb")}
    missing = [p for p in PACKAGES if p not in have]
    if missing:
        log(f"apt-get download {' '.join(missing)}")
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True, capture_output=True)
        have = {f.split("_")[0]: f for f in os.listdir(debs) if f.endswith(".deb")}
    out = {}
    for p in PACKAGES:
        deb = os.path.join(debs, have[p])
        root = os.path.join(unpacked, p)
        if not os.path.isdir(root):
            tmp = root + ".part"
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
            os.replace(tmp, root)
        version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], capture_output=True, text=True, check=True)
        out[p] = {"root": root, "version": version.stdout.strip(), "copyright": _copyright(root, p)}
    return out


def _copyright(root: str, package: str) -> str | None:
    """The package's copyright file (a -data package may point at its program's doc folder)."""
    doc = os.path.join(root, "usr", "share", "doc")
    folders = [package] + (sorted(os.listdir(doc)) if os.path.isdir(doc) else [])
    return next((c for d in folders if os.path.isfile(c := os.path.join(doc, d, "copyright"))), None)


def originals(root: str, limit: int | None) -> list[str]:
    found = []
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for f in sorted(files):
            if f.rsplit(".", 1)[-1].lower() in AUDIO_EXTS and os.path.getsize(os.path.join(dirpath, f)):
                found.append(os.path.join(dirpath, f))
    found.sort()
    return found if limit is None else found[:: max(1, len(found) // limit)][:limit]


def _flat(root: str, path: str) -> str:
    rel = os.path.relpath(path, root).replace(os.sep, "__")
    return rel.removeprefix("usr__share__")


def _decodable(path: str) -> bool:
    p = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-t", "1", "-f", "null", "-"], capture_output=True)
    return p.returncode == 0 and not p.stderr.strip()


def recipe() -> str:
    """What the corpus is a function of: this file (packages, limits, variants) and the tools' versions."""
    with open(__file__, "rb") as f:
        h = hashlib.sha256(f.read())
    for tool in (["ffmpeg", "-version"], ["lame", "--version"]):
        h.update(subprocess.run(tool, capture_output=True).stdout.splitlines()[0])
    return h.hexdigest()[:16]


def build(out: str, cache: str | None = None, log=print, reuse: bool = False) -> dict:
    """Write the corpus into `out` (emptied first); returns the manifest. With `reuse`, a corpus already
    in `out` from the same recipe is kept as it is."""
    key = recipe()
    done = os.path.join(out, "manifest.json")
    if reuse and os.path.exists(done):
        with open(done) as f:
            manifest = json.load(f)
        if manifest.get("recipe") == key:
            return manifest
    pkgs = fetch(cache or default_cache(), log)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "LICENCES"))
    files, turn = [], 0
    for name, info in pkgs.items():
        licence = None
        if info["copyright"]:
            licence = f"LICENCES/{name}.copyright"
            shutil.copyfile(info["copyright"], os.path.join(out, licence))
        os.makedirs(os.path.join(out, name))
        srcs = originals(info["root"], PACKAGES[name])
        for src in srcs:
            rel = f"{name}/{_flat(info['root'], src)}"
            shutil.copyfile(src, os.path.join(out, rel))
            files.append(_entry(rel, name, info, src, "as shipped", licence))
        chosen = [s for s in srcs if s.rsplit(".", 1)[-1].lower() != "mp3" and _decodable(s)]
        for src in chosen[:: max(1, len(chosen) // REENCODED_PER_PACKAGE)][:REENCODED_PER_PACKAGE]:
            variant, ext, cmd = VARIANTS[turn % len(VARIANTS)]
            turn += 1
            stem = _flat(info["root"], src).rsplit(".", 1)[0]
            rel = f"{name}/{stem}.{variant}.{ext}"
            _encode(src, os.path.join(out, rel), cmd)
            files.append(_entry(rel, name, info, src, variant, licence))
    manifest = {"recipe": key, "packages": {n: i["version"] for n, i in pkgs.items()}, "files": files}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    log(f"{out}: {len(files)} files from {len(pkgs)} packages")
    return manifest


def _encode(src: str, dst: str, cmd: list[str]) -> None:
    tmp = None
    if cmd[0] == "lame" and not src.lower().endswith(".wav"):  # lame reads WAV: decode the source first
        tmp = dst + ".src.wav"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, "-c:a", "pcm_s16le", tmp], check=True)
    args = [a.replace("{in}", tmp or src).replace("{out}", dst) for a in cmd]
    if args[0] == "ffmpeg":
        args = ["ffmpeg", "-v", "error", "-y", *args[1:]]
    subprocess.run(args, check=True, capture_output=True)
    if tmp:
        os.remove(tmp)


def _entry(rel: str, package: str, info: dict, src: str, made: str, licence: str | None) -> dict:
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    return {
        "path": rel,
        "package": package,
        "version": info["version"],
        "source": os.path.relpath(src, info["root"]),
        "source_sha256": digest,
        "made": made,
        "licence": licence,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="the corpus folder (emptied first)")
    ap.add_argument("--cache", help=f"where the packages are kept (default {default_cache()})")
    ap.add_argument("--reuse", action="store_true", help="keep a corpus already in OUT from the same recipe")
    args = ap.parse_args(argv)
    for tool in ("apt-get", "dpkg-deb", "ffmpeg", "lame"):
        if shutil.which(tool) is None:
            print(
                f"error: {tool} not found (scripts/install_audio_tools_debian.sh installs ffmpeg and lame)",
                file=sys.stderr,
            )
            return 2
    build(args.out, args.cache, reuse=args.reuse)
    return 0


if __name__ == "__main__":
    sys.exit(main())
