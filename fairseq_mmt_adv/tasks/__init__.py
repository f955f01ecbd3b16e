from fairseq_mmt_adv.tasks import multimodal_translation  # noqa: F401
