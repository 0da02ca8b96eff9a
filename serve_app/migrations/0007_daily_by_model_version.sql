-- The daily views gain, at the end, the model version that labelled each row's posts, and
-- shares are taken within one version. On the day a model rolls (six emotions to seven, say)
-- the old and the new labels no longer mix into one breakdown: a BI tool filters or facets
-- on model_version. Other days hold one version, so their rows and shares are unchanged.

-- Each post's latest label per task, keyword and day: a post seen by several analyses of a
-- keyword in a day counts once, under its latest label (and the model that gave it).
CREATE OR REPLACE VIEW v_daily_latest_labels AS
SELECT DISTINCT ON (p.task, q.keyword_norm, (q.created_at AT TIME ZONE 'UTC')::date, p.source, p.post_id)
       p.task,
       q.keyword_norm AS keyword,
       (q.created_at AT TIME ZONE 'UTC')::date AS day,
       p.label,
       p.model_version
FROM predictions p
JOIN queries q USING (query_id)
ORDER BY p.task, q.keyword_norm, (q.created_at AT TIME ZONE 'UTC')::date, p.source, p.post_id, q.created_at DESC;

CREATE OR REPLACE VIEW v_emotion_daily AS
SELECT keyword, day, label,
       count(*) AS posts,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY keyword, day, model_version), 2) AS pct,
       CASE WHEN label = 'neutral' THEN NULL
            ELSE round(100.0 * count(*) / NULLIF(sum(count(*)) FILTER (WHERE label <> 'neutral')
                                                 OVER (PARTITION BY keyword, day, model_version), 0), 2)
       END AS pct_of_emotional,
       model_version
FROM v_daily_latest_labels
WHERE task = 'emotion'
GROUP BY keyword, day, model_version, label;

CREATE OR REPLACE VIEW v_sentiment_daily AS
SELECT keyword, day, label,
       count(*) AS posts,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY keyword, day, model_version), 2) AS pct,
       model_version
FROM v_daily_latest_labels
WHERE task = 'sentiment'
GROUP BY keyword, day, model_version, label;
