"""``fairseq-mmt-evaluate masked``: when a source word is masked, does the image bring its
translation back (Caglayan et al., NAACL 2019)?

    fairseq-mmt-evaluate masked DATA --path CKPT --gen-subset test --cpu \\
        [--mask-dictionary FILE] [--visual-features DIR] [--json OUT]

The source words of the mask dictionary (:mod:`.mask_dictionary`; by default English colour
words) are replaced by the unknown token, and the masked split is decoded with its own images
and with those of ``--shuffle-visual-features``'s permutation. A masked sentence counts when its
reference holds a translation of each masked word; it is right when the hypothesis holds, for
each masked word, one of its translations that the reference holds. Reported: the share of
right sentences among those that count, with own and with other images. A text-only model
cannot tell the two apart.
"""

import logging
from collections.abc import Sequence

from fairseq_mmt_adv.evaluation import common, split_decoding
from fairseq_mmt_adv.evaluation.mask_dictionary import default_dictionary, mask, read_dictionary

logger = logging.getLogger("fairseq_mmt_adv.evaluate")


def parse_args(argv: Sequence[str] | None):
    parser, group = common.parser("masked", __doc__.split("\n\n")[0])
    group.add_argument(
        "--mask-dictionary", metavar="FILE",
        help="TSV: source word<TAB>target word(s) (default: colour words, for de and fr)",
    )  # fmt: skip
    return common.parse(parser, argv)


def restored(hypothesis: str, reference: str, words: list[str], dictionary) -> bool | None:
    """Whether ``hypothesis`` holds, for each masked word, a translation that the reference
    holds; None when the reference lacks a translation of one of them (the sentence does not
    count)."""
    ref, hyp = set(reference.lower().split()), set(hypothesis.lower().split())
    wanted = [dictionary[word] & ref for word in words]
    if not all(wanted):
        return None
    return all(forms & hyp for forms in wanted)


def share(hypotheses, references, masked_words, dictionary, counted) -> float:
    right = [restored(hypotheses[i], references[i], masked_words[i], dictionary) for i in counted]
    return 100 * sum(right) / len(counted)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    translator, cfg = common.load(args)
    lang = translator.task.cfg.target_lang
    if args.mask_dictionary:
        dictionary = read_dictionary(args.mask_dictionary)
    else:
        dictionary = default_dictionary(lang)
    post = cfg.common_eval.post_process
    split = split_decoding.load_split(translator, args.gen_subset, post)
    masked = [mask(translator.src_dict, tokens, dictionary) for tokens in split.sources]
    counted = [
        i
        for i, (_, words) in enumerate(masked)
        if words and restored("", split.references[i], words, dictionary) is not None
    ]
    if not counted:
        raise common.EvaluationInputError(
            f"no sentence of {args.gen_subset} holds a word of the mask dictionary whose "
            "translation its reference holds: give --mask-dictionary FILE with words of this set"
        )
    sources, words = [m[0] for m in masked], [m[1] for m in masked]
    beam = cfg.generation.beam
    found = {"split": split.name, "items": len(counted)}
    found["masked_sentences"] = sum(bool(w) for w in words)
    for name, features in (("congruent", split.congruent()), ("incongruent", split.incongruent(0))):
        hyps = split_decoding.decode(translator, sources, features, beam, post)
        found[name] = share(hyps, split.references, words, dictionary, counted)
    found.update(model=args.path, uses_image=translator.uses_image)
    common.write_json(args.json, found)
    common.print_table([
        ("masked sentences", f"{found['masked_sentences']} ({found['items']} with the "
         "translation in the reference)"),
        ("restored, own images", f"{found['congruent']:.2f} %"),
        ("restored, other images", f"{found['incongruent']:.2f} %"),
    ])  # fmt: skip
    return 0
