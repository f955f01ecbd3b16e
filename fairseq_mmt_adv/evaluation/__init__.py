"""Evaluation: scoring (BLEU, chrF, METEOR), significance (paired bootstrap), and
``fairseq-mmt-evaluate`` (:mod:`.cli`): whether a model uses the image, by contrastive sets
(:mod:`.contrastive`, CoMMuTE), incongruent images (:mod:`.incongruent`) and masked source words
(:mod:`.masked`)."""
