"""Infrastructure: settings, the composition root, the job engine, rate-limit storage."""
