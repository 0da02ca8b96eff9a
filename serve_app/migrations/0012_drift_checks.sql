-- Drift watch (serve_app/drift.py, docs/drift.md): every check of a source's last N scored
-- posts against the model's reference profile, one row per (check, task).

CREATE TABLE IF NOT EXISTS drift_checks (
    check_id           bigserial PRIMARY KEY,
    checked_at         timestamptz NOT NULL DEFAULT now(),
    source             text        NOT NULL,
    task               text        NOT NULL,
    model_version      text        NOT NULL,
    posts              integer     NOT NULL,            -- posts in the window
    reference          text        NOT NULL,            -- what the profile was made from, or "no reference"
    label_tvd          real,                            -- predicted label mix vs the reference's
    label_p            double precision,                -- chi-square test of homogeneity
    confidence_ks      real,                            -- KS statistic D on max probability
    confidence_p       double precision,
    embedding_mmd2     real,                            -- MMD^2 of pooled embeddings
    embedding_p        double precision,                -- permutation null (gamma fit)
    estimated_accuracy real,                            -- mean calibrated max probability
    reference_accuracy real,                            -- labelled validation accuracy
    drifted            boolean     NOT NULL,
    reasons            text[]      NOT NULL DEFAULT '{}',
    cpu_s              real        NOT NULL DEFAULT 0   -- the check's CPU time
);
CREATE INDEX IF NOT EXISTS drift_checks_time ON drift_checks (source, task, checked_at);

-- BI: per day, source, task and model version: checks, how many found drift, the worst
-- distances and the estimated accuracy.
CREATE OR REPLACE VIEW v_drift_daily AS
SELECT date_trunc('day', checked_at) AS day, source, task, model_version,
       count(*)                              AS checks,
       count(*) FILTER (WHERE drifted)       AS drifted_checks,
       max(label_tvd)                        AS max_label_tvd,
       max(confidence_ks)                    AS max_confidence_ks,
       max(embedding_mmd2)                   AS max_embedding_mmd2,
       round(avg(estimated_accuracy)::numeric, 4) AS avg_estimated_accuracy,
       max(reference_accuracy)               AS reference_accuracy,
       round(avg(posts)::numeric, 1)         AS avg_posts,
       round(sum(cpu_s)::numeric, 3)         AS cpu_s
FROM drift_checks
GROUP BY 1, 2, 3, 4;
