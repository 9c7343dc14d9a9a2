"""The memory estimate that refuses a model too big before anything is allocated."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from nerwin import memory, model
from nerwin.config import ConfigError, load_config
from nerwin.dataset import build_lexicon, encode, read_split
from nerwin.memory import check_memory, estimate_bytes
from nerwin.model import net_spec, new_model
from nerwin.optim import make_optimizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample():
    cfg = load_config(ROOT / "configs" / "sample.yaml")
    train = read_split(cfg, cfg.data.train)
    return cfg, build_lexicon(cfg, train)


def test_eval_batch_is_the_models():
    assert memory.EVAL_BATCH == model.PREDICT_BATCH


@pytest.mark.parametrize("opt, momentum", [("adam", 0.0), ("adagrad", 0.0), ("rmsprop", 0.0),
                                           ("sgd", 0.0), ("sgd", 0.9)])
def test_parameters_and_optimiser_state_are_exact(sample, opt, momentum):
    cfg, lex = sample
    m = new_model(cfg, lex, np.random.default_rng(0))
    o = make_optimizer(opt, m.net.params, momentum=momentum)
    e = estimate_bytes(net_spec(cfg, lex), optimizer=opt, momentum=momentum, batch_size=32,
                       n_windows=0)
    assert e["parameters"] == sum(p.nbytes for p in m.net.params.values())
    assert e["optimiser state"] == sum(a.nbytes for a in o.state.values())


def test_token_arrays_part_covers_the_encoded_corpus(sample):
    cfg, lex = sample
    corpus = read_split(cfg, cfg.data.train)
    data = encode(corpus, lex, cfg.features)
    n = len(data)
    e = estimate_bytes(net_spec(cfg, lex), optimizer="adam", momentum=0, batch_size=32,
                       n_windows=n)
    held = (sum(a.ids.nbytes for a in data.inputs) + data.labels.nbytes
            + corpus.token_ids.nbytes + corpus.tag_ids.nbytes + 8 * n)
    idx = np.arange(min(n, memory.EVAL_BATCH))
    pos, left, right = data.positions(idx)
    batch = pos.nbytes + left.nbytes + right.nbytes + sum(r.nbytes for r in data.rows(idx))
    assert held + batch < e["token arrays"]


def test_sample_config_fits_and_a_tight_limit_refuses_it(sample):
    cfg, lex = sample
    spec = net_spec(cfg, lex)
    parts = check_memory(cfg, spec, lex.n_tokens)
    total = sum(parts.values())
    assert 10**6 < total < 10**9
    assert check_memory(cfg, spec, lex.n_tokens, limit=total) == parts
    with pytest.raises(ConfigError, match=r"makes the model too big: it would need about "
                       r".* of memory is free"):
        check_memory(cfg, spec, lex.n_tokens, limit=total - 1)


def test_limit_falls_back_when_meminfo_is_missing(monkeypatch):
    monkeypatch.setattr(memory, "Path", lambda _: Path("/nonexistent/meminfo"))
    assert memory.available_bytes() > 0
    monkeypatch.setattr(memory.os, "sysconf", lambda _: (_ for _ in ()).throw(ValueError))
    assert memory.available_bytes() == memory.FALLBACK_LIMIT


def test_projections_part_is_what_an_evaluation_precomputes(sample):
    cfg, lex = sample
    spec = net_spec(cfg, lex)
    m = new_model(cfg, lex, np.random.default_rng(0))
    proj = m.net.projections(10**9)  # every table precomputed
    e = estimate_bytes(spec, optimizer="adam", momentum=0, batch_size=32, n_windows=0)
    assert e["projections"] == proj.P.nbytes > 0
    flat = estimate_bytes(dataclasses.replace(spec, hidden=()), optimizer="adam", momentum=0,
                          batch_size=32, n_windows=0)
    assert flat["projections"] == 0
    huge = estimate_bytes(dataclasses.replace(spec, hidden=(10**6,)), optimizer="adam",
                          momentum=0, batch_size=32, n_windows=0)
    assert huge["projections"] == memory.project.MAX_BYTES
