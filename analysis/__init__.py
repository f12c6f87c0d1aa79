"""Robustness analysis for Vittle: perturbations, representations, metrics and plots."""
