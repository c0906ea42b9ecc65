from support import channels


def test_checkpoint_volume_runs_on_a_folder(tmp_path, sensor_run):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "step-1.pt").write_bytes(b"x" * 4096)
    result = sensor_run("checkpoint_volume", ["--path", tmp_path / "ckpt"])
    assert not result.error, result.message()
    assert channels(result)["Checkpoints"] == 1
    assert channels(result)["Newest Checkpoint Size"] == 4096
