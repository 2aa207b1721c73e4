"""Remedies for unstable fine-tuning, valid in every task method (`method.<type>.stability`).

One module per remedy: layer-wise learning-rate decay (layerwise.py), early stopping (early_stopping.py),
LP-FT (linear_probe.py), the trust-region regularisers R3F/R4F (regularizers.py) and SMART (smart.py)
over what they share (perturbation.py), the Mosbach et al. 2021 recipe (recipe.py) and several seeds
with early discarding (seeds.py), side by side in child processes when asked or when memory allows
(parallel.py); runner.py trains one seed with the block's hooks set on the shared
loop (app.training.engine). settings.py (the block itself) and recipe.py import no torch: the API
validates and resolves a job with them.
"""
