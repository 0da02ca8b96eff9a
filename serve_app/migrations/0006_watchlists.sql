-- Watchlists: keywords monitored over time, and the spike alerts raised on them.

CREATE TABLE IF NOT EXISTS watches (
    keyword_norm  text PRIMARY KEY,                 -- lower-case, single spaces (as queries)
    keyword       text        NOT NULL,             -- as asked
    every_s       integer     NOT NULL CHECK (every_s >= 60),
    source        text        NOT NULL,
    tasks         text[]      NOT NULL,
    post_limit    integer     NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_run_at   timestamptz,
    last_error    text
);

-- One row per (keyword, task, label, bucket): the id is derived from them, so raising the
-- same alert twice (a monitor restarted mid-pass) records it once.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id        text PRIMARY KEY,
    keyword_norm    text        NOT NULL,
    task            text        NOT NULL,
    label           text        NOT NULL,
    bucket_start    timestamptz NOT NULL,
    bucket_s        integer     NOT NULL,
    share           real        NOT NULL,           -- the bucket's share of `label`, %
    baseline        real        NOT NULL,           -- the trailing baseline's share, %
    z               real        NOT NULL,           -- two-proportion z statistic
    posts           integer     NOT NULL,
    baseline_posts  integer     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivery        text        NOT NULL,           -- none | pending | delivered | failed
    attempts        integer     NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    last_error      text,
    delivered_at    timestamptz
);
CREATE INDEX IF NOT EXISTS alerts_keyword_time ON alerts (keyword_norm, created_at);
CREATE INDEX IF NOT EXISTS alerts_pending ON alerts (delivery) WHERE delivery = 'pending';

-- Each keyword's label shares per hour of the posts' own creation time, every task: a post
-- seen by several analyses counts once, with its latest label.
CREATE OR REPLACE VIEW v_trends_hourly AS
WITH latest AS (
    SELECT DISTINCT ON (q.keyword_norm, p.task, p.source, p.post_id)
           q.keyword_norm AS keyword, p.task, p.label,
           date_trunc('hour', po.created_utc) AS hour
    FROM predictions p
    JOIN queries q USING (query_id)
    JOIN posts po ON po.source = p.source AND po.post_id = p.post_id
    WHERE po.created_utc IS NOT NULL
    ORDER BY q.keyword_norm, p.task, p.source, p.post_id, q.created_at DESC
)
SELECT keyword, task, hour, label,
       count(*) AS posts,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY keyword, task, hour), 2) AS pct
FROM latest
GROUP BY keyword, task, hour, label;
