"""The webhooks slice: partner endpoints, their deliveries, and registering them."""
