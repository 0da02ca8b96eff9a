-- The strongly-negative threshold each analysis used, and a triage view that lists those
-- posts (most confident first) for BI tools, not only their count.

ALTER TABLE queries ADD COLUMN IF NOT EXISTS negative_threshold real;

CREATE OR REPLACE VIEW v_strongly_negative AS
SELECT q.query_id, q.keyword_norm AS keyword, q.created_at, q.negative_threshold,
       p.source, p.post_id, p.confidence, p.model_version,
       po.title, po.subreddit, po.url, po.created_utc
FROM predictions p
JOIN queries q USING (query_id)
LEFT JOIN posts po ON po.source = p.source AND po.post_id = p.post_id
WHERE p.task = 'sentiment'
  AND p.label = 'negative'
  AND q.negative_threshold IS NOT NULL
  AND p.confidence >= q.negative_threshold;
