"""migration_bridge: moves a legacy Django ``video_app`` into the Flask app's schema."""
