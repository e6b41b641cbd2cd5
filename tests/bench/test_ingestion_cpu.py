"""The benchmark's CPU-per-chunk tables of an ingestion (issue 21) and the embedded default's line from its rows."""

from __future__ import annotations

from typing import Any

from bench.report import _embedded_lines, ingestion_cpu_table, ingestion_phase_table, ingestion_table


def _run(broker: str, model: str, chunks_per_s: float) -> dict[str, Any]:
    return {
        "documents": 100,
        "chunks": 200,
        "seconds": 200 / chunks_per_s,
        "chunks_per_s": chunks_per_s,
        "peak_worker_mb": 3000.0,
        "broker": broker,
        "model": model,
        "cpu_seconds": {"api": 0.4, "worker": 0.2, "worker tasks": 5.0, "parse helpers": 0.6, "chroma": 0.0},
        "worker_cpu_seconds": {"embed": 4.0, "parse (helper process)": 0.6, "catalog and task code": 0.8},
    }


def _results() -> dict[str, Any]:
    return {
        "floor": {
            "onnx": {"name": "onnx", "chunks_per_s": 50.0, "cpu_ms_per_chunk": 20.0},
            "onnx_int8": {
                "name": "onnx int8",
                "chunks_per_s": 100.0,
                "cpu_ms_per_chunk": 10.0,
                "one_thread_processes": {"processes": 2, "chunks_per_s": 125.0, "cpu_ms_per_chunk": 8.0},
            },
        },
        "ingestion": {
            "scifact": {
                "corpus": "SciFact",
                "ragkeep": _run("redis", "all-MiniLM-L6-v2", 45.0),
                "ragkeep_int8": _run("redis", "all-MiniLM-L6-v2-int8", 80.0),
                "ragkeep_embedded": _run("embedded", "all-MiniLM-L6-v2", 40.0),
            }
        },
    }


def test_cpu_per_chunk_by_process_with_the_ratio_to_its_models_floor() -> None:
    _, _, redis, int8, embedded = ingestion_cpu_table(_results())
    # (0.4 + 0.2 + 5.0 + 0.6) s over 200 chunks = 31.0 ms; embed 4.0 s of 6.2 s.
    assert "| 31.0 | 20.0 | 65% | 0.90x | - |" in redis and "[Redis broker]" in redis
    assert "| 10.0 | 65% | 0.80x | 0.64x |" in int8, "the stricter floor: two processes of one thread"
    assert "| 0.80x |" in embedded and "embedded default (SQLite broker) |" in embedded  # named once
    assert "| 2.0 | 1.0 | 25.0 | 3.0 |" in redis  # API, worker main, worker tasks, parse helpers (ms per chunk)


def test_cpu_per_chunk_by_phase_and_the_broker_in_the_ingestion_table() -> None:
    _, _, redis, *_ = ingestion_phase_table(_results())
    assert "| 20.0 | 3.0 | - | - | 4.0 |" in redis and redis.endswith("| 27.0 |")
    assert any("embedded default (SQLite broker) |" in line for line in ingestion_table(_results()))


def test_the_embedded_default_against_redis_from_the_full_rows() -> None:
    comparison = {
        "documents": 5183,
        "documents_per_s": {"embedded": 9.0, "redis": 10.0},
        "ratio": 0.9,
        "ratio_by_round": [0.9, 0.7],
        "rounds": ["float model", "int8 model"],
    }
    [line, _] = _embedded_lines({"embedded": comparison})
    assert "**0.90x**" in line and "float model 0.90x, int8 model 0.70x" in line and ": met" in line


def test_the_floor_section_names_the_texts_it_embedded_and_the_bare_chunks_for_comparison() -> None:
    from bench.report import _floor_section

    floor = {
        "threads": 2,
        "sample_chunks": 300,
        "onnx": {"name": "onnx", "chunks_per_s": 47.6, "best_batch_size": 32, "by_batch_size": {"32": 47.6}},
        "bare_chunks": {"name": "onnx", "chunks_per_s": 55.1, "cpu_ms_per_chunk": 32.2},
    }
    lines = _floor_section({"model": "m", "floor": floor})
    assert "as the workers embed them: each with its document's context header" in lines[0]
    assert any("**55.1**, 32.2 ms of CPU a chunk" in line for line in lines)
    floor["onnx"] |= {
        "cpu_ms_per_chunk": 40.0,
        "one_thread_processes": {"processes": 2, "chunks_per_s": 60.5, "cpu_ms_per_chunk": 33.0},
    }
    assert any(
        "2 processes of one thread: **60.5** (33.0 ms of CPU a chunk, against 40.0)" in line
        for line in _floor_section({"model": "m", "floor": floor})
    )
    del floor["bare_chunks"]  # a run from before: its floor embedded the chunks' own text and says nothing of it
    assert not any(
        "context header" in line or "comparison" in line for line in _floor_section({"model": "m", "floor": floor})
    )
