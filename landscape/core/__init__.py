"""The values the pipeline passes along: grid specs, directions, the surface value, its metrics and previews."""
