"""08 publishes under the token's user: default name, the licence name clause, write access checked early."""
import pytest

from helpers.publish import upload as publish
from helpers.colab import hub_access
from helpers.profiles import get_profile
from helpers.colab.hub_access import (DEFAULT_MODEL_NAME, LLAMA_NAME_CLAUSE, PublishAccessError, default_repo_id,
    licence_name_warning, publish_target, token_info)


class FakeHub:
    """Stand-in for huggingface_hub.HfApi: whoami answers as the Hub does for a token of ``role``."""

    def __init__(self, user="ada", orgs=("lab",), role="write", scoped=(), fail=None):
        self.user, self.orgs, self.role, self.scoped, self.fail = user, orgs, role, scoped, fail
        self.calls = []

    def whoami(self, token=None, **kw):
        self.calls.append(("whoami", token))
        if self.fail:
            raise self.fail
        access = {"displayName": "t", "role": self.role}
        if self.role == "fineGrained":
            access["fineGrained"] = {"scoped": list(self.scoped), "global": []}
        return {"type": "user", "name": self.user, "orgs": [{"name": o} for o in self.orgs],
                "auth": {"type": "access_token", "accessToken": access}}


def test_default_repo_id_starts_with_llama_and_names_no_fixed_organisation():
    hub = FakeHub(user="ada")
    t = publish_target(None, profile=get_profile("colab"), built_with_llama=True, dry_run=False, token="hf_x", api=hub)
    assert t.repo_id == "ada/Llama-3.2-3B-OptimumLLM-Audio" and t.checked and not t.warnings
    assert t.repo_id.split("/")[1].startswith("Llama")
    assert publish_target(None, profile=get_profile("colab"), built_with_llama=True, dry_run=False, token="hf_x",
                          api=FakeHub(user="bob")).repo_id.startswith("bob/")
    assert default_repo_id("ada", get_profile("pilot")) == "ada/Llama-3.2-3B-OptimumLLM-Audio-pilot"
    # a dry run without a token needs no network and still gets a Llama name
    dry = publish_target(None, profile=get_profile("tiny"), built_with_llama=False, dry_run=True, token=None, api=FakeHub(fail=OSError("x")))
    assert dry.repo_id == f"your-username/{DEFAULT_MODEL_NAME}" and not dry.checked


def test_08_notebook_defaults_to_the_users_repo():
    from helpers.profiles import REPO_ROOT

    src = (REPO_ROOT / "notebooks" / "src" / "08_publish.py").read_text()
    assert "\nrepo_id = None  #" in src and "optimumai/" not in src


def test_a_name_without_llama_gets_the_licence_warning():
    w = licence_name_warning("ada/OptimumLLM-Audio-1.0", built_with_llama=True)
    assert w and LLAMA_NAME_CLAUSE in w and "§1.b.i" in w and "'OptimumLLM-Audio-1.0'" in w
    assert licence_name_warning("ada/Llama-3.2-3B-Mine", built_with_llama=True) is None
    assert licence_name_warning("ada/tiny-test", built_with_llama=False) is None  # the tiny profile's toy LLaMA
    t = publish_target("lab/My-TTS", profile=get_profile("colab"), built_with_llama=True, dry_run=False, token="hf_x",
                       api=FakeHub())
    assert t.checked and len(t.warnings) == 1 and "WARNING: The model name 'My-TTS'" in str(t)


@pytest.mark.parametrize("hub, repo_id, needle", [
    (FakeHub(role="read"), None, "scope 'read', which cannot write to 'ada'"),
    (FakeHub(), "optimumai/Llama-3.2-3B-OptimumLLM-Audio", "cannot create repos under 'optimumai'"),
    (FakeHub(role="fineGrained", scoped=[{"entity": {"type": "user", "name": "ada"}, "permissions": ["repo.content.read"]}]),
     None, "fine-grained (no repo write)"),
    (FakeHub(fail=ConnectionError("offline hf_secret")), None, "Could not ask the Hub who the HF_TOKEN belongs to"),
])
def test_no_write_access_fails_before_the_export(hub, repo_id, needle):
    with pytest.raises(PublishAccessError) as e:
        publish_target(repo_id, profile=get_profile("colab"), built_with_llama=True, dry_run=False, token="hf_secret", api=hub)
    assert needle in str(e.value) and "hf_secret" not in str(e.value)


def test_fine_grained_write_and_organisations():
    hub = FakeHub(role="fineGrained", scoped=[{"entity": {"type": "org", "name": "lab"}, "permissions": ["repo.write"]}])
    info = token_info("hf_x", hub)
    assert info.can_write("lab") and not info.can_write("ada") and not info.can_write("other")
    assert publish_target("lab/Llama-x", profile=get_profile("colab"), built_with_llama=True, dry_run=False, token="hf_x",
                          api=hub).checked


def test_missing_token_for_a_real_upload_is_clear(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PublishAccessError, match="No Hugging Face token.*'write' access"):
        publish_target(None, profile=get_profile("colab"), built_with_llama=True, dry_run=False, api=FakeHub())


def test_publish_reexports_and_checks_names():
    assert hub_access.default_repo_id is default_repo_id and hub_access.publish_target is publish_target
    with pytest.raises(ValueError, match="Llama-3.2-3B-OptimumLLM-Audio"):
        publish.upload_export("/nonexistent", "no-slash", dry_run=True)
