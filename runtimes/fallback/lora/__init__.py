"""LoRA adapters in the fallback runtime: many PEFT adapters served in one batch.

``adapter`` reads and checks one adapter, ``manager`` keeps the registered / loaded /
active tiers, ``slots`` holds the active ones and adds their delta to a batch's rows,
``routes`` is the HTTP side (load/unload endpoints, the watched directory, /v1/models).
"""
