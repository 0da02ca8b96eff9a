-- Issue 27: an analysis's scope (subreddits, time window or since/until, sort) and the
-- comments it added as texts of their own. Rows from before: NULL scope (all of Reddit,
-- all time, posts only).

ALTER TABLE queries ADD COLUMN IF NOT EXISTS subreddits text[];          -- only these ({}: all)
ALTER TABLE queries ADD COLUMN IF NOT EXISTS exclude_subreddits text[];
ALTER TABLE queries ADD COLUMN IF NOT EXISTS time_window text;           -- Reddit's t, or NULL
ALTER TABLE queries ADD COLUMN IF NOT EXISTS since timestamptz;
ALTER TABLE queries ADD COLUMN IF NOT EXISTS until timestamptz;
ALTER TABLE queries ADD COLUMN IF NOT EXISTS sort text;                  -- relevance|new|top|comments
ALTER TABLE queries ADD COLUMN IF NOT EXISTS include_comments integer;   -- K posts' comments
ALTER TABLE queries ADD COLUMN IF NOT EXISTS count_over text;            -- posts|comments|both
ALTER TABLE queries ADD COLUMN IF NOT EXISTS n_comments integer;         -- comments among n_posts

ALTER TABLE posts ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'post';   -- post | comment
ALTER TABLE posts ADD COLUMN IF NOT EXISTS parent_id text;                      -- a comment's post

-- A watch polls within its scope; a monitor wants the newest posts by default.
ALTER TABLE watches ADD COLUMN IF NOT EXISTS subreddits text[] NOT NULL DEFAULT '{}';
ALTER TABLE watches ADD COLUMN IF NOT EXISTS exclude_subreddits text[] NOT NULL DEFAULT '{}';
ALTER TABLE watches ADD COLUMN IF NOT EXISTS time_window text;
ALTER TABLE watches ADD COLUMN IF NOT EXISTS since timestamptz;
ALTER TABLE watches ADD COLUMN IF NOT EXISTS until timestamptz;
ALTER TABLE watches ADD COLUMN IF NOT EXISTS sort text NOT NULL DEFAULT 'new';

-- For BI: each analysis with its scope, to filter or facet the daily views on
-- (a keyword asked of r/python only is not the same question as all of Reddit).
CREATE OR REPLACE VIEW v_query_scope AS
SELECT q.query_id, q.keyword_norm AS keyword, q.created_at, q.source,
       coalesce(q.subreddits, '{}') AS subreddits,
       coalesce(q.exclude_subreddits, '{}') AS exclude_subreddits,
       q.time_window, q.since, q.until, coalesce(q.sort, 'new') AS sort,
       coalesce(q.include_comments, 0) AS include_comments,
       coalesce(q.count_over, 'posts') AS count_over,
       q.n_posts, coalesce(q.n_comments, 0) AS n_comments,
       (coalesce(cardinality(q.subreddits), 0) = 0 AND coalesce(cardinality(q.exclude_subreddits), 0) = 0
        AND q.since IS NULL AND q.until IS NULL AND coalesce(q.time_window, 'all') = 'all') AS unscoped
FROM queries q;

-- Each text's latest label per task with its kind: the breakdown of posts vs comments.
CREATE OR REPLACE VIEW v_labels_by_kind AS
SELECT q.keyword_norm AS keyword, (q.created_at AT TIME ZONE 'UTC')::date AS day, p.task,
       po.kind, p.label, count(*) AS texts
FROM predictions p
JOIN queries q USING (query_id)
JOIN posts po ON po.source = p.source AND po.post_id = p.post_id
GROUP BY 1, 2, 3, 4, 5;
