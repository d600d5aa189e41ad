"""The SECS/GEM equipment interface (SEMI E5/E30/E37 HSMS-SS), beside the MQTT link."""
