"""Response models of drivers, representative posts, net sentiment and emerging terms (the
answer's `drivers` and `representatives`, alerts' `emerging_terms`); re-exported by
serve_app.domain.schemas, where the answer and the alert use them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class NetSentiment(BaseModel):
    value: float = Field(description="(positive - negative) / (positive + negative), in [-1, 1].")
    low: float = Field(description="Lower end of its 95 % interval.")
    high: float = Field(description="Upper end of its 95 % interval.")


class DriverRow(BaseModel):
    term: str = Field(description="A word or two-word phrase, lower case (never a stop word or the keyword).")
    z: float = Field(
        description="Weighted log-odds z of the term in this label's posts against the analysis's other "
        "posts (informative Dirichlet prior, Monroe et al. 2008); >= 1.96: distinctive at 5 %."
    )
    posts: int = Field(description="The label's posts containing the term.")
    share: float = Field(description="Their share of the label's posts, %.")
    post_ids: list[str] = Field(description="Posts containing it, most confident first (at most 50).")
    net_sentiment: NetSentiment | None = Field(
        None,
        description="The term's own sentiment, over every post of the analysis containing it (any label): "
        "(positive - negative) / (positive + negative) of their sentiment labels, 95 % bootstrap interval; "
        "null without sentiment, or when none of them is positive or negative.",
    )


class RepresentativePost(BaseModel):
    id: str = Field(description="The post's id (as in the triage list and drivers' `post_ids`).")
    link: str = Field(description="The post's permalink.")
    subreddit: str = Field(description="Where it was posted.")
    created_utc: float = Field(description="When it was posted, unix seconds.")
    snippet: str = Field(description="Its text (title, then body) on one line, at most 240 characters.")
    confidence: float = Field(description="The model's confidence in the label.")


class EmergingTerm(BaseModel):
    term: str = Field(description="A word or two-word phrase (never a stop word or the keyword).")
    z: float = Field(description="Weighted log-odds z of the term in the bucket's posts against the baseline")
    posts: int = Field(description="The bucket's posts containing it.")
