"""A contrastive set: source lines, a correct and an incorrect translation of each, and the
image of each line, read from three files or from CoMMuTE's layout and checked line by line.

CoMMuTE (Futeral et al., ACL 2023; github.com/MatthieuFP/CoMMuTE) ships one directory per
language pair: ``src.en``, ``correct.LANG``, ``incorrect.LANG`` (raw text, one line each),
``img.order`` (the image file of each line) and the images under ``images/``. Each ambiguous
English sentence takes two consecutive lines, one per image, with its two candidate translations
swapped between them: a model that ignores the image prefers the same candidate for both lines,
so it gets exactly one of the two right.
"""

import os
from dataclasses import dataclass

from fairseq_mmt_adv.evaluation.common import EvaluationInputError, Images, read_text, same_count


@dataclass
class ContrastiveSet:
    sources: list[str]
    correct: list[str]
    incorrect: list[str]
    images: Images
    names: dict[str, str]  # role (source, correct, incorrect) -> file

    @classmethod
    def from_files(cls, source: str, correct: str, incorrect: str, images: Images):
        names = {"source": source, "correct": correct, "incorrect": incorrect}
        lines = {role: read_text(path, f"--{role}") for role, path in names.items()}
        same_count({names[role]: found for role, found in lines.items()})
        return cls(lines["source"], lines["correct"], lines["incorrect"], images, names)

    @classmethod
    def from_commute(cls, directory: str, target_lang: str, features: str | None = None):
        """CoMMuTE's layout under ``directory``; ``features`` (row i for line i) stands in for
        ``img.order`` and ``images/``."""
        if not os.path.isdir(directory):
            raise EvaluationInputError(f"--commute {directory} is not a directory")
        if not target_lang:
            raise EvaluationInputError("--commute needs the target language: --target-lang de")
        path = lambda name: os.path.join(directory, name)  # noqa: E731
        if features is not None:
            images = Images(features=features)
        else:
            flags = f"{path('images')} with {path('img.order')}"
            images = Images(directory=path("images"), order=path("img.order"), flags=flags)
        files = (path("src.en"), path(f"correct.{target_lang}"), path(f"incorrect.{target_lang}"))
        return cls.from_files(*files, images)

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def pairs(self) -> list[tuple[int, int]] | None:
        """CoMMuTE's pairs, consecutive lines with the same source and the candidates swapped;
        None when the set is not made of such pairs."""
        if len(self) % 2:
            return None
        pairs = [(i, i + 1) for i in range(0, len(self), 2)]
        for a, b in pairs:
            swapped = self.correct[a] == self.incorrect[b] and self.correct[b] == self.incorrect[a]
            if self.sources[a] != self.sources[b] or not swapped:
                return None
        return pairs

    def check_candidates(self) -> None:
        """A line whose two candidates are the same cannot be ranked."""
        pairs = zip(self.correct, self.incorrect, strict=True)
        for number, (good, bad) in enumerate(pairs, start=1):
            if good.strip() == bad.strip():
                raise EvaluationInputError(
                    f"{self.names['correct']} and {self.names['incorrect']}, line {number}: the "
                    "two candidates are the same"
                )
