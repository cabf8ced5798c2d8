"""The partners' door: `POST /api/v1/files` for partners with their own tokens, a watched drop
folder per partner, and the `import readings` and `layouts check` commands. What a file is and
how it is imported is adapters/partner_files/ (shared with the desk's upload in adapters/web/)."""
