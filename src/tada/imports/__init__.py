"""The paper's published artifacts, converted into tada artifacts without running anything from them
(:mod:`.safe_pickle` reads their pickles; :mod:`.ace_step_v1` maps them onto ACE-Step v1's sites and steps)."""
