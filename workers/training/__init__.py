"""The PyTorch training core: ``runner.run_trial`` runs one trial of a study."""
