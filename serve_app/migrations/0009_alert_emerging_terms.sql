-- Spike alerts name what the spike is about: the terms whose share of the keyword's posts
-- rose most in the spiking bucket against the trailing baseline (serve_app.drivers), as
-- [{"term": str, "z": float, "posts": int}], highest z first. Older alerts have none.

ALTER TABLE alerts ADD COLUMN IF NOT EXISTS emerging_terms jsonb NOT NULL DEFAULT '[]'::jsonb;
