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

# Adam learning rate of the latent Tc optimisation (100 steps). Each crystal keeps the atom count
# drawn from its starting latent (tcdesign.generate.sample.decode_optimized): when the optimised
# latent chose it, the Tc head's preference for a few two-atom cells (VRu, NbRu, RuC, ...) made
# duplicates. Measured on 400 samples each with the prior rule (50 x 10 Langevin; ALIGNN judge;
# benchmarks/results/generator_opt_atom_count.json), plain sampling giving 0.108 above 5 K:
#   atom count from the optimised latent, lr 5e-3: uniqueness 0.868, fraction above 5 K 0.455,
#     valid + distinct + novel + above 5 K 0.335, number-of-elements distance 0.18
#   from the starting latent, lr 5e-3: 0.950, 0.407, 0.338, 0.086
#   from the starting latent, lr 1e-2: 0.885, 0.540, 0.410, 0.071
# 1e-2 gives the most distinct high-Tc candidates before relaxation, but fewer that survive
# screening near the hull: the funnel at 1000 samples (benchmarks/results/funnel_n1000_lr1e-2.json)
# counted 131 passed, 71 within 0.1 eV/atom of the hull and 59 stable, unique, novel and passing,
# against 121 / 83 / 69 for the old rule at 5e-3 (funnel_n1000_old_atom_rule.json; all three
# before the lattice fix). 5e-3 stays the default: it
# keeps uniqueness at 0.95 and the fraction above 5 K at 3.8x plain's.
OPT_LR = 5e-3

# Where the latent Tc optimisation starts: z ~ N(0, I), or the encoder means of training crystals
# drawn at random (CDVAE's optimisation task starts from encoded crystals).
OptStart = Literal["random", "train"]
OPT_STARTS: tuple[OptStart, ...] = ("random", "train")

# composition -> structure with --relax: candidates relaxed with CHGNet per formula
CSP_POOL = 10
# with --relax, template and hybrid candidates rank by their own score minus RELAX_ENERGY_WEIGHT
# x relaxed CHGNet energy above the pool's lowest (eV/atom); chosen on the training formulas
# (benchmarks/csp_relax_rank.py)
RELAX_ENERGY_WEIGHT = 5.0

# composition -> structure, template and hybrid: the best ENERGY_POOL candidates are re-ranked by
# substitution log-probability minus ENERGY_WEIGHT x CHGNet static energy (eV/atom) above the
# lowest of them (tcdesign.generate.substitution.template_csp). Chosen on the training formulas,
# each left out of its own templates (benchmarks/csp_energy.py, results/csp_energy.json): top-1
# 0.655 at weight 0, 0.676 at 1, 0.678 at 2, 0.673-0.676 at 5-10, 0.635 at 100 (846 formulas).
ENERGY_WEIGHT = 2.0
ENERGY_POOL = 10
