# Retrain the shipped default model from scratch (see README, "Model").
RECIPE := recipes/default-model.toml
BUILD := build

.PHONY: default-model test

default-model:
	mkdir -p $(BUILD)
	rm -f $(BUILD)/default-model.safetensors $(BUILD)/default-model.csv
	poregrain train --config $(RECIPE) --half --out $(BUILD)/default-model.safetensors
	poregrain evaluate --config $(RECIPE) --model $(BUILD)/default-model.safetensors
	@echo "review the figures, then: cp $(BUILD)/default-model.safetensors src/napari_poregrain/models/default.safetensors"

test:
	python -m pytest -q
