"""The steering benchmark (``tada bench``): clips at many strengths, scored per clip."""
