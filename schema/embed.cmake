# Turns schema/NNN_name.sql into a C array of migrations, in version order.
# Usage: cmake -DOUT=schema_sql.c -DSCHEMA_DIR=schema -P embed.cmake
file(GLOB files ${SCHEMA_DIR}/[0-9]*.sql)
list(SORT files)
set(body "")
set(table "")
set(count 0)
foreach(f ${files})
  get_filename_component(base ${f} NAME_WE)
  string(REGEX MATCH "^([0-9]+)_(.*)$" _ ${base})
  set(version ${CMAKE_MATCH_1})
  math(EXPR version "${version} + 0")
  set(name ${CMAKE_MATCH_2})
  file(READ ${f} sql)
  string(REPLACE "\\" "\\\\" sql "${sql}")
  string(REPLACE "\"" "\\\"" sql "${sql}")
  string(REPLACE "\t" "\\t" sql "${sql}")
  string(REPLACE "\n" "\\n\"\n\t\"" sql "${sql}")
  string(APPEND body "static const char sql_${count}[] =\n\t\"${sql}\";\n\n")
  string(APPEND table "\t{${version}, \"${name}\", sql_${count}},\n")
  math(EXPR count "${count} + 1")
endforeach()
file(WRITE ${OUT}.tmp "/* Generated from the schema migrations by schema/embed.cmake. Do not edit. */\n"
  "#include \"migrations.h\"\n\n${body}"
  "const struct migration fc_migrations[] = {\n${table}\t{0, 0, 0},\n};\n"
  "const int fc_migrations_count = ${count};\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
