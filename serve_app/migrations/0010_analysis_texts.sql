-- Export (GET /analyses/{id}/posts): each analysis's scored texts exactly as it scored
-- them, in the record's order. The shared `posts` table keeps one version of a post (the
-- first seen) and `predictions.confidence` is a `real`, so neither gives back the bytes
-- the held record in Redis gave; this table does. `kind`/`parent_id`: comments (issue 27).

CREATE TABLE IF NOT EXISTS analysis_texts (
    query_id     text    NOT NULL REFERENCES queries (query_id) ON DELETE CASCADE,
    position     integer NOT NULL,            -- the text's index among the record's posts
    post_id      text    NOT NULL,
    kind         text    NOT NULL DEFAULT 'post',   -- post | comment
    parent_id    text,                        -- a comment's post
    link         text    NOT NULL,
    subreddit    text    NOT NULL,
    created_utc  double precision,            -- unix seconds, as the record holds them
    title        text    NOT NULL,
    body         text    NOT NULL,
    lang         text    NOT NULL,
    predictions  jsonb   NOT NULL,            -- {task: {label, confidence, scores}}
    PRIMARY KEY (query_id, position)
);
