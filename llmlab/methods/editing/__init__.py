"""Knowledge-editing methods: each is an Editor whose `edit` applies edits and restores on exit."""
