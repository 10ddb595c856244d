"""Defenses: each maps clean predictions to defended ones under one interface."""
