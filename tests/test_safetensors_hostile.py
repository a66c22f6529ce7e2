"""Hostile `.safetensors` files: each one is a one-line UserError naming the file, in the library and
through `python -m albert.convert --from=hf` (exit status 2, no traceback, nothing written)."""

import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, record_fault

from albert.core import fileio
from albert.core.errors import UserError
from albert.export import hf
from albert.io import safetensors as safetensors_io
from albert.model.config import AlbertConfig

NOT_VALID = "not a valid safetensors file: "


def _frame(header, data=b"", length=None):
  """A file's bytes: the 8-byte little-endian header length (`length` may lie), the header, the data."""
  raw = header if isinstance(header, bytes) else json.dumps(header).encode()
  return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _tensor(dtype, shape, begin, end):
  return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# name -> (file bytes, what the message says after "<path>: ")
HOSTILE = {
    "negative_dimension": (_frame({"w": _tensor("F32", [-1, 4], 0, 16)}, bytes(16)), NOT_VALID),
    "two_unknown_dimensions": (_frame({"w": _tensor("F32", [-1, -1], 0, 4)}, bytes(4)), NOT_VALID),
    # 2^32 * 2^32 * 2 elements wrap to 0 in 64 bits, which would match the empty offsets.
    "element_count_overflows_64_bits": (_frame({"w": _tensor("F32", [2**32, 2**32, 2], 0, 0)}), NOT_VALID),
    "offsets_beyond_the_end": (_frame({"w": _tensor("F32", [4], 0, 16)}, bytes(8)), NOT_VALID),
    "overlapping_tensors": (_frame({"a": _tensor("F32", [2], 0, 8), "b": _tensor("F32", [2], 4, 12)}, bytes(12)),
                            NOT_VALID),
    "offsets_not_shape_times_dtype": (_frame({"w": _tensor("F32", [2, 2], 0, 12)}, bytes(12)), NOT_VALID),
    "header_length_2_to_the_60": (_frame(b"{}", length=2**60), NOT_VALID),  # must fail before allocating
    "header_longer_than_the_file": (_frame(b"{}", length=1000), NOT_VALID),
    "header_not_json": (_frame(b"nope"), NOT_VALID),
    "header_not_an_object": (_frame(b"[1, 2]"), NOT_VALID),
    "header_not_utf8": (_frame(b'{"\xff": 1}'), NOT_VALID),
    "metadata_not_strings": (_frame({"__metadata__": {"format": 1}}), NOT_VALID),
    "unknown_dtype": (_frame({"w": _tensor("Q7", [1], 0, 8)}, bytes(8)), NOT_VALID),
    "shorter_than_8_bytes": (b"\x01\x00", NOT_VALID),
    "empty_file": (b"", NOT_VALID),
    # Valid for the format, but not as numpy arrays.
    "float8_dtype": (_frame({"w": _tensor("F8_E4M3", [8], 0, 8)}, bytes(8)), "tensor 'w' has unsupported dtype"),
    "more_than_64_dimensions": (_frame({"w": _tensor("F32", [1] * 65, 0, 4)}, bytes(4)),
                                "tensor 'w' of shape [1, 1, 1, 1, 1, 1, ... (59 more)] cannot be a numpy array"),
    "huge_empty_tensor": (_frame({"w": _tensor("F32", [2**63, 0], 0, 0)}), "cannot be a numpy array"),
}


def _one_line_error_naming(path, excinfo):
  message = str(excinfo.value)
  assert "\n" not in message and message.startswith(f"{path}: "), message
  return message[len(f"{path}: "):]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_is_a_one_line_user_error(tmp_path, name):
  raw, expected = HOSTILE[name]
  path = tmp_path / f"{name}.safetensors"
  path.write_bytes(raw)
  with pytest.raises(UserError) as excinfo:
    safetensors_io.read_file(str(path))
  reason = _one_line_error_naming(path, excinfo)
  assert expected in reason, reason
  assert len(reason) < 250, reason


def test_missing_file_and_directory_are_user_errors(tmp_path):
  with pytest.raises(UserError, match="safetensors file not found: .*missing.safetensors$"):
    safetensors_io.read_file(str(tmp_path / "missing.safetensors"))
  directory = tmp_path / "model.safetensors"
  directory.mkdir()
  with pytest.raises(UserError) as excinfo:
    safetensors_io.read_file(str(directory))
  assert _one_line_error_naming(directory, excinfo) == "cannot be read: it is a directory"


def test_edge_files_that_are_valid_still_read(tmp_path):
  path = tmp_path / "edge.safetensors"
  path.write_bytes(_frame({}))
  assert safetensors_io.read_file(str(path)) == ({}, {})
  safetensors_io.write_file(str(path), {"scalar": np.float64(2.5), "empty": np.zeros((0, 3), np.int8),
                                        "strided": np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2]})
  tensors, metadata = safetensors_io.read_file(str(path))
  assert metadata == {}
  assert tensors["scalar"].shape == () and tensors["scalar"] == 2.5
  assert tensors["empty"].shape == (0, 3)
  np.testing.assert_array_equal(tensors["strided"], [[0, 2], [4, 6], [8, 10]])  # written in C order


def test_bfloat16_reads_without_tensorflow_imported(tmp_path):
  # The package builds BF16 arrays with np.dtype("bfloat16"), which exists only once ml_dtypes is imported.
  import ml_dtypes
  path = str(tmp_path / "bf16.safetensors")
  safetensors_io.write_file(path, {"w": np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16)}, metadata={"format": "pt"})
  script = ("import sys; from albert.io import safetensors as s; t, m = s.read_file(sys.argv[1]); "
            "assert 'tensorflow' not in sys.modules; print(t['w'].dtype, t['w'].tolist(), m)")
  result = subprocess.run([sys.executable, "-c", script, path], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT), timeout=60, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "bfloat16 [1.5, -2.0] {'format': 'pt'}"


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "model.safetensors"
  safetensors_io.write_file(str(path), {"w": np.ones(3, np.float32)})
  before = path.read_bytes()
  with pytest.raises(Exception, match="complex128"):  # no safetensors dtype; the package refuses it
    safetensors_io.write_file(str(path), {"w": np.ones(3, np.float32), "z": np.ones(2, np.complex128)})
  assert path.read_bytes() == before
  assert os.listdir(tmp_path) == ["model.safetensors"]


# ---- through the command line ----

CONFIG = AlbertConfig(vocab_size=40, embedding_size=8, hidden_size=16, num_hidden_layers=1, num_hidden_groups=1,
                      num_attention_heads=2, intermediate_size=32, inner_group_num=1, max_position_embeddings=16)


@pytest.fixture(scope="module")
def valid_hf_dir(tmp_path_factory):
  """A tiny Hugging Face folder that converts (checked in-process), to be spoiled one file at a time."""
  directory = tmp_path_factory.mktemp("valid_hf")
  rng = np.random.default_rng(0)
  named = {name: rng.normal(size=shape).astype(np.float32) for name, shape in hf.original_shapes(CONFIG).items()}
  safetensors_io.write_file(str(directory / hf.HF_SAFETENSORS), hf.original_to_hf_tensors(CONFIG, named),
                            metadata={"format": "pt"})
  fileio.write_json(str(directory / hf.HF_CONFIG), hf.albert_config_to_hf(CONFIG, ["AlbertForPreTraining"]), indent=2)
  (directory / hf.HF_SPM).write_bytes(b"copied as is; the converter does not parse it")
  hf.hf_to_original(str(directory), str(tmp_path_factory.mktemp("converted")))
  return directory


@pytest.mark.slow
@pytest.mark.parametrize("name", ["element_count_overflows_64_bits", "two_unknown_dimensions",
                                  "header_length_2_to_the_60"])
def test_cli_reports_a_hostile_file_in_one_line(valid_hf_dir, tmp_path, name):
  hf_dir, output_dir = tmp_path / "hf", tmp_path / "out"
  shutil.copytree(valid_hf_dir, hf_dir)
  hostile = hf_dir / hf.HF_SAFETENSORS
  hostile.write_bytes(HOSTILE[name][0])
  result = subprocess.run([sys.executable, "-m", "albert.convert", "--from=hf", f"--input_dir={hf_dir}",
                           f"--output_dir={output_dir}"], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2"), timeout=300,
                          check=False)
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  last = [line for line in result.stderr.splitlines() if line.strip()][-1]
  assert last.startswith(f"error: {hostile}: {NOT_VALID}"), result.stderr
  assert not output_dir.exists() or not any(output_dir.iterdir())
  record_fault("hostile weights", "convert --from=hf", name.replace("_", " "), last)
