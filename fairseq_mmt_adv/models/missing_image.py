"""The error of a model that fuses the image but got none."""


def missing_image_error(arch: str, fusion: str) -> ValueError:
    """Where image features come from, for a ``--visual-fusion fusion`` model of ``arch``."""
    return ValueError(
        f"this {arch} model fuses the image (--visual-fusion {fusion}) but its input has no "
        "image features. fairseq-interactive cannot carry them: translate with "
        "fairseq-mmt-translate DATA --path CKPT --input FILE (one 'caption<TAB>image path' a "
        "line) or fairseq_mmt_adv.MultimodalTranslator; fairseq-train and fairseq-generate "
        "need --task multimodal_translation --visual-features DIR"
    )
