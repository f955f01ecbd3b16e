"""Which source words ``fairseq-mmt-evaluate masked`` masks, and which target words translate
them: a TSV file (``source word<TAB>target word(s)``, the target words separated by spaces, so
that inflected forms count), or the built-in English colour words with their German and French
forms. Words are compared lowercased. Masking works on the binarized source: a word split by
subword-nmt's BPE (``re@@ d``) becomes one unknown token.
"""

from pathlib import Path

from fairseq_mmt_adv.evaluation.common import EvaluationInputError

# English colour words (Caglayan et al., NAACL 2019, mask colours) and their forms.
_COLOURS = {
    "de": {
        "red": "rot rote roten roter rotes",
        "blue": "blau blaue blauen blauer blaues",
        "green": "grün grüne grünen grüner grünes",
        "yellow": "gelb gelbe gelben gelber gelbes",
        "black": "schwarz schwarze schwarzen schwarzer schwarzes",
        "white": "weiß weiße weißen weißer weißes",
        "brown": "braun braune braunen brauner braunes",
        "orange": "orange orangen orangefarbene orangefarbenen orangefarbener orangefarbenes",
        "pink": "rosa pink pinke pinken pinker pinkes",
        "purple": "lila violett violette violetten violetter violettes",
        "gray": "grau graue grauen grauer graues",
        "grey": "grau graue grauen grauer graues",
    },
    "fr": {
        "red": "rouge rouges",
        "blue": "bleu bleue bleus bleues",
        "green": "vert verte verts vertes",
        "yellow": "jaune jaunes",
        "black": "noir noire noirs noires",
        "white": "blanc blanche blancs blanches",
        "brown": "marron marrons brun brune bruns brunes",
        "orange": "orange oranges",
        "pink": "rose roses",
        "purple": "violet violette violets violettes",
        "gray": "gris grise grises",
        "grey": "gris grise grises",
    },
}


def default_dictionary(target_lang: str) -> dict[str, set[str]]:
    if target_lang not in _COLOURS:
        raise EvaluationInputError(
            f"no built-in mask dictionary for target language {target_lang!r} (there are "
            f"{', '.join(_COLOURS)}): give --mask-dictionary FILE (source word<TAB>target words)"
        )
    return {word: set(forms.split()) for word, forms in _COLOURS[target_lang].items()}


def read_dictionary(path: str) -> dict[str, set[str]]:
    """``{source word: target words}`` of a TSV file, lowercased; bad lines are named."""
    if not Path(path).is_file():
        raise EvaluationInputError(f"--mask-dictionary {path} does not exist")
    found: dict[str, set[str]] = {}
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        source, tab, targets = line.partition("\t")
        if not tab or not source.strip() or not targets.split() or len(source.split()) != 1:
            raise EvaluationInputError(
                f"{path}, line {number}: give one source word, a tab, and its target word(s) "
                "separated by spaces"
            )
        found.setdefault(source.strip().lower(), set()).update(targets.lower().split())
    if not found:
        raise EvaluationInputError(f"--mask-dictionary {path} holds no word")
    return found


def words(dictionary, tokens) -> list[tuple[str, list[int]]]:
    """The words of a binarized sentence with the token ids of each (BPE pieces joined)."""
    grouped, pieces, ids = [], [], []
    for index in tokens.tolist():
        if index == dictionary.eos():
            break
        symbol = dictionary[index]
        pieces.append(symbol[:-2] if symbol.endswith("@@") else symbol)
        ids.append(index)
        if not symbol.endswith("@@"):
            grouped.append(("".join(pieces), ids))
            pieces, ids = [], []
    if ids:
        grouped.append(("".join(pieces), ids))
    return grouped


def mask(dictionary, tokens, masked: dict[str, set[str]]):
    """``tokens`` with each word of ``masked`` replaced by one unknown token, and the masked
    words (lowercased), in order."""
    import torch

    kept, found = [], []
    for word, ids in words(dictionary, tokens):
        if word.lower() in masked:
            kept.append(dictionary.unk())
            found.append(word.lower())
        else:
            kept.extend(ids)
    return torch.LongTensor([*kept, dictionary.eos()]), found
