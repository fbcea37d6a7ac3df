"""Sampling defaults shared by the library, the CLI and the pipeline (no heavy imports here)."""

from typing import Literal

# How atom counts, types and cell volumes are drawn (tcdesign.generate.composition). Measured on
# 200 samples each (50 x 10 Langevin, benchmarks/results/generator.json and
# generator_cdvae_rule.json): CDVAE's rule gives validity 0.755, density distance 1.32 g/cm^3,
# number-of-elements distance 0.46; the training-set prior 0.915, 0.40 and 0.065.
CompositionRule = Literal["prior", "cdvae"]
COMPOSITION_RULE: CompositionRule = "prior"
COMPOSITION_RETRIES = 20  # redraws of a composition that fails the SMACT test ("prior" rule)

# Sharpening of the composition head's element probabilities, p^(1/T): CDVAE's own rule is T = 1,
# which with the bundled generator gives 3.8 elements per crystal against 2.5 in the data;
# T = 0.5 brings the number-of-elements distance to val from 1.28 to 0.46
# (benchmarks/results/generator_cdvae_rule.json); the prior rule applies it to its element draws.
COMPOSITION_TEMPERATURE = 0.5

# Adam learning rate of the latent Tc optimisation (100 steps). Measured on 1000 samples each
# with the prior rule (50 x 10 Langevin; benchmarks/results/generator_n1000_opt_lr*.json): the
# fraction with predicted Tc > 5 K goes from 0.108 (plain) to 0.320 at 3e-3 (2.96x, uniqueness
# 0.906) and 0.454 at 5e-3 (4.2x, uniqueness 0.846); the fraction that is valid, distinct, novel
# and above 5 K goes from 0.099 to 0.236 and 0.319. 5e-3 gives the most distinct new candidates
# per sample; at 1e-2 (200 samples) uniqueness falls to 0.8 as latents crowd into one optimum.
OPT_LR = 5e-3

# Where the latent Tc optimisation starts: z ~ N(0, I), or the encoder means of training crystals
# drawn at random (CDVAE's optimisation task starts from encoded crystals).
OptStart = Literal["random", "train"]
OPT_STARTS: tuple[OptStart, ...] = ("random", "train")

# composition -> structure with --relax: candidates relaxed with CHGNet per formula
CSP_POOL = 10
