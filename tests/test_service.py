from tcve import service
from tcve.service import Service, hub_reachable


def test_auto_model_set_is_demo_offline_and_ffhq_when_the_hub_answers(monkeypatch):
    from tcve.demo import models as demo_models

    monkeypatch.delenv("TCVE_MODELS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub_reachable()
    assert demo_models.demo_pack_available()          # the pack ships with the repository
    assert Service.from_env().model_set == "demo"
    monkeypatch.setattr(demo_models, "demo_pack_available", lambda: False)
    assert Service.from_env().model_set == "tiny"      # without it: the tiny random networks
    # Online without the offline flag: the lookup decides (the test suite's network guard refuses it).
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert not hub_reachable()
    monkeypatch.setattr(service, "hub_reachable", lambda: True)
    assert Service.from_env().model_set == "ffhq"
    monkeypatch.setenv("TCVE_MODELS", "tiny")
    assert Service.from_env().model_set == "tiny"
