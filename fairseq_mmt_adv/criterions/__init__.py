from fairseq_mmt_adv.criterions import adversarial_reconstruction  # noqa: F401
