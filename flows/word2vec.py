"""The word2vec pipeline (Laboratorio 4, part 1) as a Prefect flow.

ingest -> tokenize -> vocab -> drop rare tokens -> sliding-window pairs (Parquet shards)
       -> train -> evaluate -> log/register
"""

from prefect import flow
from prefect.runtime import flow_run

from flows.config import Word2VecConfig, flatten
from tasks import tracking
from tasks.data import ingest_csv
from tasks.evaluation import evaluate_task
from tasks.text import tokenize_tweets
from tasks.training import train_task
from tasks.vocab import build_vocab, drop_rare_tokens
from tasks.windows import window_pairs

PIPELINE = "word2vec"
PARITY = Word2VecConfig()


@flow(name=PIPELINE)
def word2vec(config: Word2VecConfig = PARITY) -> str:
    """Returns the MLflow run id."""
    tags = {"prefect_flow_run_id": flow_run.get_id() or "none"}
    with tracking.pipeline_run(PIPELINE, config.profile, flatten(config), tags) as run_id:
        rows = ingest_csv(PIPELINE, config.data.dataset, config.data.file, config.data.limit_rows)
        tokens = tokenize_tweets(PIPELINE, rows, config.tokenize)
        vocab = build_vocab(PIPELINE, tokens, config.vocab.min_count)
        encoded = drop_rare_tokens(PIPELINE, tokens, vocab)
        pairs = window_pairs(PIPELINE, encoded, config.windows.size, config.windows.shard_rows)
        tracking.log_stages(run_id, [rows, tokens, vocab, encoded, pairs])
        tracking.set_tags(run_id, {"data_fingerprint": rows.fingerprint})
        tracking.log_metrics(
            run_id,
            {
                "train_rows": rows.stats["rows"],
                "decode_errors": rows.stats["decode_errors"],
                "vocab_size": vocab.stats["vocab_size"],
                "pairs": pairs.stats["pairs"],
            },
        )
        trained = train_task(pairs, vocab, config.train, run_id)
        evaluate_task(trained, vocab, encoded, config.evaluate, run_id)
        tracking.register_task(run_id, trained.model, PIPELINE, example_ids=[0, 1, 2])
    return run_id
