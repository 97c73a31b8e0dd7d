"""The air-gapped supply chain: keys, weights as OCI artifacts (CNCF ModelPack), signatures,
SBOMs, one bundle per release, verify and import. Heavy imports stay inside functions."""
