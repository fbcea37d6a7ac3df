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

# Adam learning rate of the latent Tc optimisation (100 steps): measured on 200 samples each,
# 1e-3 raises the fraction with predicted Tc > 5 K from 0.13 to 0.21, 3e-3 to 0.32 (validity
# 0.82, uniqueness 0.91), 1e-2 to 0.59 but with uniqueness 0.77 as latents crowd into one optimum.
OPT_LR = 3e-3
