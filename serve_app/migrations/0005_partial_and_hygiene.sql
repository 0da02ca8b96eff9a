-- Reddit as it really behaves: an analysis may be answered from the pages fetched before a
-- later page failed (partial), and post hygiene leaves some posts out. Old rows: NULL.

ALTER TABLE queries ADD COLUMN IF NOT EXISTS partial_reason text;   -- NULL: the source answered in full
ALTER TABLE queries ADD COLUMN IF NOT EXISTS excluded jsonb;        -- {"language": 3, "duplicate": 2, ...}
