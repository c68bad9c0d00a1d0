"""Operations: health probes (/healthz, /readyz) and the glue of the login lockout (django-axes)."""
