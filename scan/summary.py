"""The lines a scan ends with: how many files, which verdicts, which generators, which errors, how fast."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dif.decision import VERDICTS

AMBIGUOUS = "(ambiguous)"  # fake, but related generators are too close to name one


@dataclass
class Summary:
    verdicts: Counter[str] = field(default_factory=Counter)
    generators: Counter[str] = field(default_factory=Counter)  # of the fakes: the generator blamed
    errors: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # already in DEST (--resume)

    def add(self, verdict: str | None, top: str | None, error_code: str | None) -> None:
        if error_code is not None or verdict is None:
            self.errors[error_code or "unknown"] += 1
            return
        self.verdicts[verdict] += 1
        if verdict == "fake":
            self.generators[top or AMBIGUOUS] += 1

    @property
    def files(self) -> int:
        return sum(self.verdicts.values()) + self.failed

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def lines(self, seconds: float) -> list[str]:
        rate = self.files / seconds if seconds > 0 else 0.0
        out = [f"{self.files} files in {seconds:.1f} s ({rate:.1f} images/s)"
               + (f", {self.skipped} already scanned" if self.skipped else "")]
        out.append("verdicts: " + ", ".join(f"{v} {self.verdicts[v]}" for v in VERDICTS))
        if self.generators:
            out.append("fakes by generator: " + _counts(self.generators))
        out.append(f"errors: {self.failed}" + (f" ({_counts(self.errors)})" if self.errors else ""))
        return out


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
