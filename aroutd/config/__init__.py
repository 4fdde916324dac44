"""SPEC §2 configuration: frozen values parsed from TOML text (no file is read here).

parse: parse_config(text) -> Config; values: the dataclasses and defaults;
expand: ${VAR} and ${file:PATH}; tomlpos / tomlscan: line numbers for errors.
"""
