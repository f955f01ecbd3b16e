"""Which dictionaries a model was trained with: a digest of each, recorded in its checkpoint.

fairseq maps tokens to ids through the data directory's ``dict.LANG.txt``; a model meeting other
dictionaries (another ``fairseq-preprocess`` run, other data) decodes word salad without a word,
or fails on a size mismatch deep in ``load_state_dict``. The task records what it trains with
(:func:`dictionary_record`) and compares it wherever a checkpoint meets a data directory
(:func:`dictionary_differences`).
"""

import hashlib
import os

from fairseq import utils


def dictionary_digest(dictionary) -> dict:
    """The size and a sha256 of the symbols in id order (their counts do not change the ids)."""
    text = "\n".join(dictionary.symbols).encode("utf-8")
    return {"size": len(dictionary), "sha256": hashlib.sha256(text).hexdigest()}


def dictionary_record(source, target) -> dict:
    """What a checkpoint records of its source and target dictionaries."""
    return {"source": dictionary_digest(source), "target": dictionary_digest(target)}


def dictionary_path(data: str, lang: str | None) -> str:
    """The ``dict.LANG.txt`` of a ``fairseq-preprocess`` directory (the first of ``a:b``)."""
    return os.path.join(utils.split_paths(data)[0], f"dict.{lang}.txt")


def dictionary_differences(recorded: dict, current: dict, paths: dict) -> list[str]:
    """One line per side whose dictionary differs from the recorded one, naming its file."""
    differences = []
    for side in ("source", "target"):
        was, now = recorded.get(side), current[side]
        if was is None or was == now:
            continue
        how = (
            f"{now['size']} entries, the model's {was['size']}"
            if was["size"] != now["size"]
            else f"the same {now['size']} entries in another order or with other words"
        )
        differences.append(f"{paths[side]} ({side}): {how}")
    return differences
