/*
 * migrations.h - the SQL migrations of schema/, compiled into the binary.
 */
#ifndef FC_MIGRATIONS_H
#define FC_MIGRATIONS_H

struct migration {
	int version;      /* from the file name NNN_name.sql */
	const char *name; /* the name part */
	const char *sql;  /* the whole file; objects unqualified, see migrate.c */
};

/* In ascending version order, terminated by an entry with version 0. */
extern const struct migration fc_migrations[];
extern const int fc_migrations_count;

#endif
