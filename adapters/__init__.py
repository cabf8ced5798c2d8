"""Channel adapters: each translates one channel into Submissions and Verdicts back."""
