"""Pure tensor and text functions, no model code: scoring, latent metrics, eta^2, overlap, QA/MC, language ID."""
