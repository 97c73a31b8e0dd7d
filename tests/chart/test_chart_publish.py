"""Package, push to the real loopback registry, pull back; push an image through the real engine."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import uuid

import helm_python as helm
import docker
import pytest
import yaml

from chart_checks import plan
from packager.chart import package_chart, write_chart
from packager.errors import UserError
from chart_pull import pull_chart
from packager.publish import publish, push_chart, push_image


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_chart_round_trips_through_the_registry(registry, tmp_path):
    p = plan("nvidia-llama8b-tp2")
    p["packager_version"] = f"0.1.0-t{uuid.uuid4().hex[:8]}"  # a fresh tag each run
    chart = write_chart(p, tmp_path / "src")
    archive = package_chart(chart, tmp_path / "dist")
    assert archive.name == f"llama-3.1-8b-instruct-{p['packager_version']}.tgz"
    pushed = push_chart(archive, f"oci://{registry}/charts")
    assert pushed.chart_ref == f"oci://{registry}/charts/llama-3.1-8b-instruct:{p['packager_version']}"
    assert pushed.chart_digest.startswith("sha256:")
    pulled = pull_chart(pushed.chart_ref, tmp_path / "pulled")
    assert _sha(pulled) == _sha(archive)  # byte for byte
    with helm.Chart.load(str(pulled)) as c:
        assert c.values["accelerator"] == {"resourceKey": "nvidia.com/gpu", "count": 2}
        assert c.schema["additionalProperties"] is False


def test_publish_chart_only_from_a_build_dir(registry, tmp_path):
    p = plan("cpu-smollm2")
    p["packager_version"] = f"0.1.0-t{uuid.uuid4().hex[:8]}"
    write_chart(p, tmp_path / "build" / "chart")  # build/chart/<model>/
    result = publish(tmp_path / "build", f"oci://{registry}/charts", skip_image=True)
    assert result.image_ref is None
    assert result.chart_ref.endswith(f"/smollm2-135m-instruct:{p['packager_version']}")
    assert pull_chart(result.chart_ref, tmp_path / "pulled").is_file()


def test_publish_errors_are_user_errors(tmp_path, registry):
    with pytest.raises(UserError, match="no Helm chart"):
        publish(tmp_path, f"oci://{registry}/charts", skip_image=True)
    chart = write_chart(plan("cpu-smollm2"), tmp_path / "c")
    with pytest.raises(UserError, match="pushing the chart"):
        publish(chart, "oci://127.0.0.1:9/charts", skip_image=True)  # nothing listens on port 9


def _engine():
    try:
        import docker

        client = docker.from_env()
        client.ping()
        return client
    except Exception as exc:  # no SDK, no socket, engine down: all mean "no engine"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the Docker engine is not reachable ({exc}); run .ci/docker.sh")
        pytest.skip(f"no Docker engine: {exc}")


def _tiny_image(client, tag):
    """A real one-file image made locally (nothing can be pulled here)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = f"packager publish test {tag}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    repo, _, version = tag.rpartition(":")
    client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=version)


@pytest.mark.docker
def test_push_image_and_publish_pin_the_digest(registry, tmp_path):
    client = _engine()
    tag = f"packager/publish-test:{uuid.uuid4().hex[:8]}"
    _tiny_image(client, tag)
    try:
        ref = push_image(tag, registry)
        repo, _, digest = ref.partition("@")
        assert repo == f"{registry}/packager/publish-test" and digest.startswith("sha256:")
        # The registry holds it: its manifest digest is what push reported.
        data = client.api.inspect_distribution(f"{repo}:{tag.rpartition(':')[2]}")
        assert data["Descriptor"]["digest"] == digest
        # ...and gives it back: drop every local name of the image, pull it by digest, same image id.
        local_id = client.images.get(tag).id
        client.images.remove(f"{repo}:{tag.rpartition(':')[2]}", force=True)
        client.images.remove(tag, force=True)
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(local_id)
        client.api.pull(f"{repo}@{digest}")
        assert client.images.get(f"{repo}@{digest}").id == local_id
        client.api.tag(local_id, *tag.rsplit(":", 1))  # publish below pushes the local tag again

        p = plan("cpu-smollm2")
        p["packager_version"] = f"0.1.0-t{uuid.uuid4().hex[:8]}"
        chart = write_chart(p, tmp_path / "c", image=tag)
        result = publish(chart, f"oci://{registry}/charts")
        assert result.image_ref and result.image_ref.startswith(f"{registry}/packager/publish-test@sha256:")
        pulled = pull_chart(result.chart_ref, tmp_path / "pulled")
        helm.expand(str(tmp_path / "x"), str(pulled))
        values = yaml.safe_load((tmp_path / "x" / "smollm2-135m-instruct" / "values.yaml").read_text())
        assert f"{values['image']['repository']}@{values['image']['digest']}" == result.image_ref
        assert yaml.safe_load((chart / "values.yaml").read_text())["image"]["digest"] == ""  # source untouched
    finally:
        client.images.remove(tag, force=True)


@pytest.mark.docker
def test_push_missing_image_is_a_user_error(registry):
    _engine()
    with pytest.raises(UserError, match="no local image"):
        push_image(f"packager/does-not-exist:{uuid.uuid4().hex[:8]}", registry)
