"""The evaluation pipeline behind `modelguard-fast run`: setup, grid of attacks, cache and reports."""
