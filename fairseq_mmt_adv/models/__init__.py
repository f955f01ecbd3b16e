from fairseq_mmt_adv.models import cgru_mmt, transformer_mmt  # noqa: F401
